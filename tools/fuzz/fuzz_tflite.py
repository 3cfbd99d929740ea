"""Fuzz target: the TensorFlow Lite reader (aslnet/_tflite.py) and the
MobileNet v1 weight readers of aslnet/pretrained.py on top of it.

Documented errors: ValueError (read_tflite: "not a TensorFlow Lite model",
"truncated or corrupt ..."; pretrained: "not the expected MobileNet v1
layout") and OSError.  Anything else is a crash.

    python tools/fuzz/fuzz_tflite.py -max_total_time=60
"""
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness  # noqa: E402

ALLOWED = (ValueError, OSError)


def _setup():
    import atheris
    with atheris.instrument_imports(include=_harness.INSTRUMENT):
        import aslnet._tflite  # noqa: F401
        import aslnet.pretrained
    # the real readers check each file's SHA-256 first (resolve_weights_dir), which
    # no mutated file passes: take the folder as it is, to reach the parser
    # (tests/fuzz does the same with monkeypatch)
    aslnet.pretrained.resolve_weights_dir = lambda explicit=None: Path(explicit)


_state = {}


def one_input(data: bytes):
    from aslnet import _tflite, pretrained
    if not _state:
        import seeds
        _state["dir"] = Path(_harness.scratch_dir())
        _state["embedding"] = seeds.tiny_mobilenet_v1_tflite()
        _state["head"] = seeds.tiny_head_tflite()
    folder = _state["dir"]
    path = folder / "fuzz.tflite"
    path.write_bytes(data)
    try:
        _tflite.read_tflite(path)
    except ALLOWED:
        pass
    # the same bytes as the embedding extractor, then as the classifier head
    for mine, other, other_bytes in ((pretrained.EMBEDDING_FILE, pretrained.HEAD_FILE,
                                      _state["head"]),
                                     (pretrained.HEAD_FILE, pretrained.EMBEDDING_FILE,
                                      _state["embedding"])):
        (folder / mine).write_bytes(data)
        (folder / other).write_bytes(other_bytes)
        try:
            pretrained.mobilenet_v1_weights(folder)
        except ALLOWED:
            pass
    try:
        pretrained.imagenet_head(folder)
    except ALLOWED:
        pass


def seed_files():
    import seeds
    return {"embedding.tflite": seeds.tiny_mobilenet_v1_tflite(),
            "head.tflite": seeds.tiny_head_tflite()}


if __name__ == "__main__":
    _setup()
    _harness.run("tflite", one_input, seed_files())
