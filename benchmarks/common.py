"""Helpers shared by the orchestrator (``benchmarks.run``) and the peer modules
(``benchmarks.peers.*``).  Imports nothing heavy: each peer imports its own
framework, in its own process."""
import argparse
import json
import os
import statistics
import time

import numpy as np

# MobileNet v1 alpha 1.0 224x224: multiply-adds per image (Keras's figure, classifier
# included); only for results written before the runs counted them from the model
# (meta["macs"], by benchmarks.peers.aslnet prepare)
MACS_PER_IMAGE = 0.569e9
FLOPS_PER_IMAGE = 2 * MACS_PER_IMAGE

ARCHS = ("mobilenet", "mobilenet_v2")   # Keras's application names, as load_pretrained's
DEFAULT_ARCH, DEFAULT_SIZE = "mobilenet", 224
ARCH_LABELS = {"mobilenet": "MobileNet v1", "mobilenet_v2": "MobileNetV2"}


def model_key(arch, size):
    """'mobilenet_v2-160': the key of one (arch, input size) in the results."""
    return f"{arch}-{size}"


def model_label(arch, size):
    """'MobileNetV2 alpha 1.0 160×160'."""
    return f"{ARCH_LABELS.get(arch, arch)} alpha 1.0 {size}×{size}"


def thread_env(threads):
    """Environment variables that cap every runtime's thread pools at ``threads``
    (set before the framework is imported: the peers run in subprocesses)."""
    n = str(threads)
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n,
            "TF_NUM_INTRAOP_THREADS": n, "TF_NUM_INTEROP_THREADS": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2"}


def summary(values):
    """{'median', 'min', 'max', 'runs'} of a list of figures."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": [round(v, 4) for v in values]}


def throughput(step, images, reps, iters, warmup=1):
    """Images/s of ``step()`` (which processes ``images`` images): ``warmup``
    untimed calls, the first one timed apart (``first_call_s``: planning,
    weight reorders, graph tracing), then ``reps`` runs of ``iters`` calls, one
    figure per run."""
    t = time.perf_counter()
    step()
    first = time.perf_counter() - t
    for _ in range(warmup - 1):
        step()
    runs = []
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(iters):
            step()
        runs.append(images * iters / (time.perf_counter() - t))
    return {**summary(runs), "first_call_s": round(first, 4), "iters": iters,
            "batch": images}


def peer_args(tasks):
    """The command line every peer takes."""
    p = argparse.ArgumentParser()
    p.add_argument("task", choices=tasks)
    p.add_argument("--work", required=True, help="folder with prepare's files")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--iters", type=json.loads, default={},
                   help='JSON {"b1": n, "b32": n, "train": n}: calls per timed run')
    p.add_argument("--export", action="store_true",
                   help="inference: also write the model for the downstream peer")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--split", help="fit: the split folder (train/valid/test)")
    p.add_argument("--data", help="prepare: the dataset folder (one folder per class)")
    p.add_argument("--arch", default=DEFAULT_ARCH, choices=ARCHS)
    p.add_argument("--size", type=int, default=DEFAULT_SIZE, help="input height = width")
    return p.parse_args()


def write_result(args, name, result):
    with open(os.path.join(args.work, f"{name}-{args.task}.json"), "w") as f:
        json.dump(result, f, indent=1)


def keras_train_step(args, name, model, more=None):
    """Time ``train_on_batch`` of a Keras-API model (aslnet or Keras) on the shared batch;
    ``more(model)``: a dict of further figures for the same result."""
    x, y = train_batch(args.work)
    first = model.train_on_batch(x, y, return_dict=True)["loss"]
    res = throughput(lambda: model.train_on_batch(x, y), len(x), args.reps,
                     iters(args, "train", 5), warmup=2)
    params = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    res.update(first_loss=float(first), trainable_params=params)
    if more is not None:
        res.update(more(model))
    write_result(args, name, res)


def predict_after_train(args, model):
    """{'predict_after_train': ...}: milliseconds of ``model.predict(x)`` on the 32 shared
    images right after one ``train_on_batch`` ('first') and of the predict that follows
    ('second'), ``args.reps`` times; 'first' - 'second' is what a training step costs the
    next inference (an engine that keeps inference-ready weights, e.g. convolutions with
    batch norm folded in, prepares them again)."""
    x, (xt, yt) = inputs(args.work), train_batch(args.work)
    model.predict(x, verbose=0)
    first, second = [], []
    for _ in range(args.reps):
        model.train_on_batch(xt, yt)
        for out in (first, second):
            t = time.perf_counter()
            model.predict(x, verbose=0)
            out.append((time.perf_counter() - t) * 1e3)
    return {"predict_after_train": {"batch": len(x), "first_ms": summary(first),
                                    "second_ms": summary(second)}}


def inputs(work):
    """The 32 preprocessed images (NHWC float32) every peer is timed and checked on."""
    return np.load(os.path.join(work, "images.npy"))


def train_batch(work):
    d = np.load(os.path.join(work, "train_batch.npz"))
    return d["x"], d["y"]


def load_weights(work, which):
    """{layer name: [arrays in Keras layouts]} from prepare's ``which`` file
    ('imagenet': the classifier MobileNet; 'tutorial': load_pretrained's model)."""
    d = np.load(os.path.join(work, f"weights-{which}.npz"))
    out = {}
    for key in sorted(d.files, key=lambda k: (k.rsplit(":", 1)[0], int(k.rsplit(":", 1)[1]))):
        name, _ = key.rsplit(":", 1)
        out.setdefault(name, []).append(d[key])
    return out


def tutorial_meta(work):
    """{'trainable': [layer names], 'head': dense layer name, 'classes': int}."""
    with open(os.path.join(work, "tutorial.json")) as f:
        return json.load(f)


def iters(args, key, default):
    return int(args.iters.get(key, default))


def batch_throughputs(args, predict, x):
    """images/s of ``predict(batch)`` at batch 1 and 32 (the inference table's columns)."""
    res = {}
    for b in (1, 32):
        xb = np.ascontiguousarray(x[:b])
        res[f"b{b}"] = throughput(lambda: predict(xb), b, args.reps,
                                  iters(args, f"b{b}", 20 if b == 1 else 2))
    return res
