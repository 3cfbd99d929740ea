"""aslnet after ``model.quantize("int8")`` (int8 convolutions on the activation ranges of
the ImageNet TFLite file, as LiteRT runs it: ``litert_int8``): the aslnet peer's inference
task, reported as its own row; the project's targets compare float32 only.

    python -m benchmarks.peers.aslnet_int8 inference --work DIR ...
"""
import sys

from benchmarks.peers import aslnet as base

if __name__ == "__main__":
    base.NAME, base.QUANTIZE = "aslnet_int8", "int8"
    sys.exit(base.main())
