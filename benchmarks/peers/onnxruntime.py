"""ONNX Runtime (CPU execution provider) on the ONNX export of the PyTorch
model (``benchmarks.peers.torch --export``): NCHW input, all graph
optimizations, ``intra_op_num_threads`` = threads, sequential execution.

    python -m benchmarks.peers.onnxruntime inference --work DIR ...
"""
import os
import sys

import numpy as np
import onnxruntime as ort

from benchmarks import common


def inference(args):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(os.path.join(args.work, "mobilenet.onnx"), opts,
                                providers=["CPUExecutionProvider"])
    x = np.ascontiguousarray(common.inputs(args.work).transpose(0, 3, 1, 2))
    res = {"version": ort.__version__,
           **common.batch_throughputs(args, lambda xb: sess.run(None, {"input": xb}), x)}
    np.save(os.path.join(args.work, "onnxruntime-outputs.npy"), sess.run(None, {"input": x})[0])
    common.write_result(args, "onnxruntime", res)


def main():
    args = common.peer_args(("inference",))
    inference(args)


if __name__ == "__main__":
    sys.exit(main())
