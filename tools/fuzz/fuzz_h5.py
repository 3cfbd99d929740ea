"""Fuzz target: the Keras .h5 reader, through its public names
``aslnet.models.load_model`` and ``Model.load_weights``.

Documented errors: ``ModelFileError`` (a ValueError and an OSError: corrupt,
truncated, not HDF5, no model config), ValueError (a config or weights that do
not fit), OSError, and NotImplementedError (a Keras graph aslnet does not
build: not a chain).  Anything else is a crash.

    python tools/fuzz/fuzz_h5.py -max_total_time=60
"""
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness  # noqa: E402

ALLOWED = (ValueError, OSError, NotImplementedError)


def _setup():
    import atheris
    with atheris.instrument_imports(include=_harness.INSTRUMENT):
        import aslnet.models  # noqa: F401
    # the files aslnet did not write are read first in a child process (h5_probe),
    # bounded in time: well below the per-input limit (run.py's -timeout=5)
    from aslnet.saving import h5_probe
    h5_probe.TIMEOUT_S = 2.0


_state = {}


def one_input(data: bytes):
    import aslnet.models
    if not _state:
        import seeds
        _state["dir"] = _harness.scratch_dir()
        _state["model"] = seeds.tiny_model()
    path = os.path.join(_state["dir"], "fuzz.h5")
    with open(path, "wb") as f:
        f.write(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for compile_ in (True, False):
            try:
                aslnet.models.load_model(path, compile=compile_)
            except ALLOWED:
                pass
        for kw in ({}, {"by_name": True, "skip_mismatch": True}):
            try:
                _state["model"].load_weights(path, **kw)
            except ALLOWED:
                pass


def seed_files():
    import tempfile

    import seeds
    full, weights = seeds.h5_files(tempfile.mkdtemp(prefix="aslnet-fuzz-h5-seed-"))
    out = {}
    for p in (full, weights):
        with open(p, "rb") as f:
            out[os.path.basename(p)] = f.read()
    return out


if __name__ == "__main__":
    _setup()
    _harness.run("h5", one_input, seed_files())
