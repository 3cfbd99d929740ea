"""LiteRT (``ai_edge_litert``, its native uint8 kernels) on the shared quantized TFLite
files themselves: MobileNetV2's whole classifier, MobileNet v1's embedding extractor (its
trunk and pooling: the 1024 x 1000 head is a separate file and ~1% of the work).  The
reference for aslnet's int8 row ("aslnet int8 >= 2x LiteRT on the same quantized file",
issue 18).  224x224 only (the files' size).  Inputs are quantized as the file says
(uint8, scale 1/128, zero point 128 for MobileNet's [-1, 1] preprocessing).  Batch 32 by
resizing the input where the graph allows it, else (MobileNetV2's RESHAPE to [1, 1001])
as 32 calls of batch 1, which the result says.

    python -m benchmarks.peers.litert_int8 inference --work DIR --arch ARCH ...
"""
import os
import sys

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from benchmarks import common

FILES = {"mobilenet": "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite",
         "mobilenet_v2": "mobilenet_v2_1.0_224_quant.tflite"}


def _interpreter(path, batch, threads):
    interp = Interpreter(model_path=path, num_threads=threads)
    inp = interp.get_input_details()[0]
    if batch != 1:
        interp.resize_tensor_input(inp["index"], [batch, *inp["shape"][1:]])
    interp.allocate_tensors()
    out = interp.get_output_details()[0]
    scale, zero = inp["quantization"]

    def quantize(x):
        return np.clip(np.rint(x / scale + zero), 0, 255).astype(inp["dtype"])

    def run(xq):
        interp.set_tensor(inp["index"], xq)
        interp.invoke()
        return interp.get_tensor(out["index"])
    return run, quantize, out["quantization"]


def inference(args):
    if args.size != 224 or args.arch not in FILES:
        raise SystemExit(f"litert_int8: the quantized files are {args.arch} 224x224 only")
    path = os.path.join(os.environ["ASLNET_WEIGHTS"], FILES[args.arch])
    x = common.inputs(args.work)
    res = {"file": os.path.basename(path)}
    run1, quantize, (oscale, ozero) = _interpreter(path, 1, args.threads)
    xq = quantize(x)
    res["b1"] = common.throughput(lambda: run1(xq[:1]), 1, args.reps,
                                  common.iters(args, "b1", 20))
    try:
        run32, _, _ = _interpreter(path, 32, args.threads)
        run32(xq)
        step = lambda: run32(xq)                                      # noqa: E731
    except (RuntimeError, ValueError) as e:
        res["b32_as"] = f"32 calls of batch 1 (the graph takes no batch of 32: {e})"[:300]
        step = lambda: [run1(xq[i:i + 1]) for i in range(32)]        # noqa: E731
    res["b32"] = common.throughput(step, 32, args.reps, common.iters(args, "b32", 2))
    if args.arch == "mobilenet_v2":   # 1001 classes, background first: aslnet's 1000
        out = np.concatenate([run1(xq[i:i + 1]) for i in range(len(xq))]).astype(np.float32)
        np.save(os.path.join(args.work, "litert_int8-outputs.npy"),
                (oscale * (out - ozero))[:, 1:])
    common.write_result(args, "litert_int8", res)


def main():
    args = common.peer_args(("inference",))
    inference(args)


if __name__ == "__main__":
    sys.exit(main())
