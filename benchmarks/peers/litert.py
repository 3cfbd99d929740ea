"""LiteRT (``ai_edge_litert``, default XNNPACK CPU delegate) on the float32
TFLite conversion of the Keras model (``benchmarks.peers.keras --export``);
batch 32 by resizing the input tensor.

    python -m benchmarks.peers.litert inference --work DIR ...
"""
import os
import sys

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from benchmarks import common


def _interpreter(path, batch, threads, size):
    interp = Interpreter(model_path=path, num_threads=threads)
    inp = interp.get_input_details()[0]
    interp.resize_tensor_input(inp["index"], [batch, size, size, 3])
    interp.allocate_tensors()
    out = interp.get_output_details()[0]["index"]

    def run(x):
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        return interp.get_tensor(out)
    return run


def inference(args):
    path = os.path.join(args.work, "mobilenet.tflite")
    x = common.inputs(args.work)
    res = {}
    for b in (1, 32):
        run, xb = _interpreter(path, b, args.threads, args.size), np.ascontiguousarray(x[:b])
        res[f"b{b}"] = common.throughput(lambda: run(xb), b, args.reps,
                                         common.iters(args, f"b{b}", 20 if b == 1 else 2))
    np.save(os.path.join(args.work, "litert-outputs.npy"), run(x))
    common.write_result(args, "litert", res)


def main():
    args = common.peer_args(("inference",))
    inference(args)


if __name__ == "__main__":
    sys.exit(main())
