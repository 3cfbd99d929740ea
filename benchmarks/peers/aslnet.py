"""aslnet: prepares the shared inputs and weights, and is timed like the peers.

    python -m benchmarks.peers.aslnet {prepare,inference,train,profile,fit,phases} --work DIR
        [--arch mobilenet|mobilenet_v2] [--size 224] ...
"""
import json
import os
import re
import sys
import time

import numpy as np

from benchmarks import common

TASKS = ("prepare", "inference", "train", "profile", "fit", "phases")
NAME, POLICY = "aslnet", "float32"   # benchmarks.peers.aslnet_bf16 changes both
QUANTIZE = None                        # benchmarks.peers.aslnet_int8: "int8"


def _save_weights(model, path):
    np.savez(path, **{f"{layer.name}:{j}": w for layer in model.layers
                      for j, w in enumerate(layer.get_weights())})


def onednn_info():
    """The oneDNN that aslnet's extension loaded: its file, version, and the ISA it
    dispatches to (``dnnl_get_effective_cpu_isa``: the CPU's best, or less under
    ``ONEDNN_MAX_CPU_ISA``), asked through ctypes of that very library."""
    import ctypes
    import aslnet  # noqa: F401  (loads the extension, and with it libdnnl)
    with open("/proc/self/maps") as f:
        paths = sorted({line.split()[-1] for line in f   # a wheel's: libdnnl-<hash>.so.3
                        if re.match(r"libdnnl[-.]", os.path.basename(line.split()[-1]))})
    if len(paths) != 1:
        return {"error": f"expected one libdnnl in this process, found {paths or 'none'}"}
    lib = ctypes.CDLL(paths[0])   # already loaded: the same handle

    class Version(ctypes.Structure):
        _fields_ = [("major", ctypes.c_int), ("minor", ctypes.c_int),
                    ("patch", ctypes.c_int), ("hash", ctypes.c_char_p),
                    ("cpu_runtime", ctypes.c_uint), ("gpu_runtime", ctypes.c_uint)]
    lib.dnnl_version.restype = ctypes.POINTER(Version)
    lib.dnnl_get_effective_cpu_isa.restype = ctypes.c_int
    lib.dnnl_cpu_isa2str.restype = ctypes.c_char_p
    lib.dnnl_cpu_isa2str.argtypes = [ctypes.c_int]
    v = lib.dnnl_version().contents
    isa = lib.dnnl_get_effective_cpu_isa()
    return {"library": paths[0], "version": f"{v.major}.{v.minor}.{v.patch}",
            "isa": lib.dnnl_cpu_isa2str(isa).decode(), "isa_value": isa,
            "max_cpu_isa_env": os.environ.get("ONEDNN_MAX_CPU_ISA")}


def _imagenet_model(args):
    """The ImageNet classifier of ``args.arch`` at ``args.size`` (aslnet's weights; other
    sizes than 224 load the 224 weights, with Keras's warning)."""
    from aslnet.applications import MobileNet, MobileNetV2
    build = {"mobilenet": MobileNet, "mobilenet_v2": MobileNetV2}[args.arch]
    return build(input_shape=(args.size, args.size, 3))


def _preprocess(args):
    from aslnet.applications import mobilenet, mobilenet_v2
    return {"mobilenet": mobilenet, "mobilenet_v2": mobilenet_v2}[args.arch].preprocess_input


def prepare(args):
    """images.npy (32 dataset images resized to ``--size``, preprocessed), train_batch.npz
    (10 of them, one-hot labels), weights-imagenet.npz (``--arch``), weights-tutorial.npz
    and tutorial.json: everything the peers need, so that none imports aslnet.  Its
    result also gives the ImageNet model's multiply-adds per image."""
    from aslnet.preprocessing.image import img_to_array, list_class_files, load_img
    from benchmarks.phases import layer_flops
    classes, files = list_class_files(args.data)
    picks = [(i % len(classes), i // len(classes)) for i in range(32)]  # round robin
    x = np.stack([img_to_array(load_img(os.path.join(args.data, files[c][k]),
                                        target_size=(args.size, args.size)))
                  for c, k in picks])
    x = _preprocess(args)(x).astype(np.float32)
    np.save(os.path.join(args.work, "images.npy"), x)
    y = np.eye(len(classes), dtype=np.float32)[[c for c, _ in picks[:10]]]
    np.savez(os.path.join(args.work, "train_batch.npz"), x=x[:10], y=y)
    imagenet = _imagenet_model(args)
    _save_weights(imagenet, os.path.join(args.work, "weights-imagenet.npz"))
    macs = sum(layer_flops(layer) for layer in imagenet.layers) // 2
    model = _tutorial_model(args, with_head=False)
    _save_weights(model, os.path.join(args.work, "weights-tutorial.npz"))
    meta = {"trainable": [l.name for l in model.layers if l.trainable],
            "head": model.layers[-1].name, "classes": len(classes)}
    with open(os.path.join(args.work, "tutorial.json"), "w") as f:
        json.dump(meta, f, indent=1)
    common.write_result(args, "aslnet", {"images": x.shape[0], "classes": classes,
                                         "arch": args.arch, "size": args.size,
                                         "macs_per_image": int(macs),
                                         "onednn": onednn_info()})


def _tutorial_model(args, with_head=True):
    """load_pretrained's model of ``args.arch`` at ``args.size``; its new head set from
    prepare's weights (the same start for every peer) if ``with_head``."""
    import aslnet
    from aslnet.optimizers import Adam
    aslnet.set_random_seed(0)
    model = aslnet.load_pretrained(args.arch, num_classes=10,
                                   input_shape=(args.size, args.size, 3))
    if with_head:
        work = args.work
        head = common.tutorial_meta(work)["head"]
        model.get_layer(head).set_weights(common.load_weights(work, "tutorial")[head])
    model.compile(optimizer=Adam(learning_rate=1e-4), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def inference(args):
    model = _imagenet_model(args)
    x = common.inputs(args.work)
    if QUANTIZE:   # the ImageNet model: on the activation ranges of its TFLite file
        model.quantize(QUANTIZE)
    res = common.batch_throughputs(args, model.predict_on_batch, x)
    np.save(os.path.join(args.work, f"{NAME}-outputs.npy"), model.predict_on_batch(x))
    common.write_result(args, NAME, res)


def train(args):
    common.keras_train_step(args, NAME, _tutorial_model(args),
                            more=lambda model: common.predict_after_train(args, model))


def profile(args):
    """Forward passes under ONEDNN_VERBOSE=profile_exec (set by the caller):
    after each timed pass a line '@@pass b=<batch> wall_ms=<ms>' closes the
    oneDNN exec lines of that pass (parsed by benchmarks.utilisation)."""
    model = _imagenet_model(args)
    x = common.inputs(args.work)
    for b in (32, 1):
        xb = x[:b]
        for _ in range(2):
            model.predict_on_batch(xb)
        print(f"@@warm b={b}", flush=True)
        for _ in range(args.reps):
            t = time.perf_counter()
            model.predict_on_batch(xb)
            print(f"@@pass b={b} wall_ms={(time.perf_counter() - t) * 1e3:.4f}", flush=True)
    common.write_result(args, NAME, {"passes": args.reps})


def _flows(args):
    """The tutorial's train, valid and test flows of the split."""
    from aslnet.preprocessing.image import ImageDataGenerator
    gen = ImageDataGenerator(preprocessing_function=_preprocess(args))
    flow = lambda sub, shuffle: gen.flow_from_directory(  # noqa: E731
        os.path.join(args.split, sub), target_size=(args.size, args.size), batch_size=10,
        shuffle=shuffle)
    return flow("train", True), flow("valid", True), flow("test", False)


def fit(args):
    """The tutorial end to end: flows, model, fit with validation, test accuracy."""
    t0 = time.perf_counter()
    train_b, valid_b, test_b = _flows(args)
    model = _tutorial_model(args)
    t1 = time.perf_counter()
    hist = model.fit(x=train_b, validation_data=valid_b, epochs=args.epochs, verbose=2)
    t2 = time.perf_counter()
    pred = model.predict(test_b, verbose=0).argmax(1)
    acc = float(np.mean(pred == np.asarray(test_b.classes)))
    common.write_result(args, NAME, {
        "setup_s": t1 - t0, "fit_s": t2 - t1, "test_s": time.perf_counter() - t2,
        "test_accuracy": acc, "test_images": len(pred), "train_images": train_b.samples,
        "epochs": args.epochs,
        "history": {k: [float(v) for v in vs] for k, vs in hist.history.items()}})


def phases(args):
    """The tutorial's fit phase by phase (see benchmarks.phases): decode, fit with a
    timing callback, save, test."""
    from benchmarks import phases as ph
    train_b, valid_b, test_b = _flows(args)
    model = _tutorial_model(args)
    t = time.perf_counter()
    for flow in (train_b, valid_b):
        for i in range(len(flow)):
            flow[i]
    decode = time.perf_counter() - t
    timer = ph.PhaseTimer()
    t = time.perf_counter()
    hist = model.fit(x=train_b, validation_data=valid_b, epochs=args.epochs, verbose=0,
                     callbacks=[timer])
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    model.save(os.path.join(args.work, f"{NAME}-phases-model.h5"))
    save = time.perf_counter() - t
    t = time.perf_counter()
    pred = model.predict(test_b, verbose=0).argmax(1)
    test = time.perf_counter() - t
    common.write_result(args, NAME, {
        **ph.breakdown(timer, decode, fit_s, save, test),
        **ph.work(model, train_b.samples, valid_b.samples, args.epochs),
        "train_images": train_b.samples, "valid_images": valid_b.samples,
        "test_images": len(pred), "epochs": args.epochs,
        "test_accuracy": float(np.mean(pred == np.asarray(test_b.classes))),
        "history": {k: [float(v) for v in vs] for k, vs in hist.history.items()}})


def main():
    args = common.peer_args(TASKS)
    import aslnet
    aslnet.set_num_threads(args.threads)
    aslnet.mixed_precision.set_global_policy(POLICY)
    globals()[args.task](args)


if __name__ == "__main__":
    sys.exit(main())
