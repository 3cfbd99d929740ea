"""aslnet under the mixed_bfloat16 dtype policy (inference-mode convolutions and the
frozen trunk in bfloat16, training in float32): the aslnet peer's tasks, reported as
their own row; the project's targets compare float32 only.

    python -m benchmarks.peers.aslnet_bf16 {inference,train,profile,fit,phases} --work DIR ...
"""
import sys

from benchmarks.peers import aslnet as base

if __name__ == "__main__":
    base.NAME, base.POLICY = "aslnet_bf16", "mixed_bfloat16"
    sys.exit(base.main())
