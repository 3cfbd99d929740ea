"""PyTorch (CPU, eager): inference under ``torch.inference_mode()`` in NCHW and
channels_last, and the tutorial's training step; ``--export`` writes the
ONNX model for ONNX Runtime.

    python -m benchmarks.peers.torch {inference,train} --work DIR [--arch A --size S]
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks import common
from benchmarks.peers.torch_mobilenet import build

TASKS = ("inference", "train")


def inference(args):
    model = build(args.arch, size=args.size)
    model = model.load_keras_weights(common.load_weights(args.work, "imagenet")).eval()
    x = torch.from_numpy(common.inputs(args.work).transpose(0, 3, 1, 2).copy())
    res = {}
    for fmt in ("nchw", "channels_last"):
        if fmt == "channels_last":
            model = model.to(memory_format=torch.channels_last)
        for b in (1, 32):
            xb = x[:b].contiguous(memory_format=torch.channels_last if fmt != "nchw"
                                  else torch.contiguous_format)

            def step():
                with torch.inference_mode():
                    model(xb)
            key = f"b{b}" if fmt == "nchw" else f"b{b}_channels_last"
            res[key] = common.throughput(step, b, args.reps,
                                         common.iters(args, f"b{b}", 20 if b == 1 else 2))
        with torch.inference_mode():
            out = model(x).numpy()
        np.save(os.path.join(args.work, f"torch{'' if fmt == 'nchw' else '_cl'}-outputs.npy"),
                out)
    if args.export:
        model = model.to(memory_format=torch.contiguous_format)
        torch.onnx.export(model, (x[:1],), os.path.join(args.work, "mobilenet.onnx"),
                          input_names=["input"], output_names=["probs"],
                          dynamic_axes={"input": {0: "batch"}, "probs": {0: "batch"}},
                          opset_version=17, dynamo=False)
    common.write_result(args, "torch", res)


def train(args):
    meta = common.tutorial_meta(args.work)
    model = build(args.arch, meta["classes"], head=meta["head"], size=args.size)
    model.load_keras_weights(common.load_weights(args.work, "tutorial"))
    model.train().freeze_like_keras(set(meta["trainable"]))
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4,
                           eps=1e-7)                              # Keras's Adam epsilon
    x, y = common.train_batch(args.work)
    x = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    labels = torch.from_numpy(y.argmax(1))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x, logits=True), labels)
        loss.backward()
        opt.step()
        return loss.detach()

    first = float(step())
    res = common.throughput(step, len(x), args.reps, common.iters(args, "train", 5), warmup=2)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    common.write_result(args, "torch", {**res, "first_loss": first, "trainable_params": params})


def main():
    args = common.peer_args(TASKS)
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    globals()[args.task](args)


if __name__ == "__main__":
    sys.exit(main())
