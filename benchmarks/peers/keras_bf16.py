"""Keras 3 on TensorFlow under its mixed_bfloat16 dtype policy: the Keras peer's tasks,
reported as their own row, so that aslnet's mixed_bfloat16 row has a same-precision peer.

    python -m benchmarks.peers.keras_bf16 {inference,train,fit} --work DIR ...
"""
import sys

from benchmarks.peers import keras as base

if __name__ == "__main__":
    base.NAME, base.POLICY = "keras_bf16", "mixed_bfloat16"
    sys.exit(base.main())
