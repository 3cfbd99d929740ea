"""HDF5 files aslnet did not write are read first in a child process
(aslnet.saving.h5_probe): a crash, a hang or a huge allocation in libhdf5
becomes a ModelFileError.  The crash and hang inputs fuzz_h5 found are in
tests/fuzz/test_fuzz_regressions.py."""
import io
import subprocess
import zipfile

import h5py
import numpy as np
import pytest

import aslnet
from aslnet import layers as L
from aslnet.saving import ModelFileError, h5_probe
from tests.conftest import REPO_ROOT

CRASH = REPO_ROOT / "tests" / "fuzz" / "crashes" / "h5-hdf5-segv-root-attribute.bin"


@pytest.fixture(autouse=True)
def fresh_probe(monkeypatch):
    monkeypatch.setattr(h5_probe, "_SEEN", {})


@pytest.fixture
def model():
    aslnet.set_random_seed(0)
    inp = L.Input((4,))
    return aslnet.Model(inp, L.Dense(3, name="head")(L.Dense(5, name="hidden")(inp)))


@pytest.fixture
def children(monkeypatch):
    """The command lines of the child processes started."""
    seen, run = [], subprocess.run

    def counting(cmd, *a, **kw):
        seen.append(cmd)
        return run(cmd, *a, **kw)
    monkeypatch.setattr(h5_probe.subprocess, "run", counting)
    return seen


def test_a_keras_h5_is_read_in_a_child_once_per_content(model, tmp_path, children):
    path = tmp_path / "m.h5"
    model.save(path)
    x = np.ones((2, 4), np.float32)
    for _ in range(2):
        np.testing.assert_array_equal(aslnet.models.load_model(path, compile=False).predict(x, verbose=0),
                                      model.predict(x, verbose=0))
    model.load_weights(path)
    assert len(children) == 1 and children[0][2] == str(path)
    copy = tmp_path / "copy.h5"                       # same content elsewhere: no new child
    copy.write_bytes(path.read_bytes())
    aslnet.models.load_model(copy, compile=False)
    assert len(children) == 1


def test_native_files_skip_the_child(model, tmp_path, children):
    """aslnet's own files carry a SHA-256 of their content, checked instead."""
    model.save(tmp_path / "m.aslnet")
    aslnet.models.load_model(tmp_path / "m.aslnet")
    assert children == []


def _weights_file_declaring(path, shape):
    """A Keras weights file whose 'hidden' kernel declares ``shape`` (chunked and never
    written, so the file stays small and reading it fills the whole shape)."""
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"hidden"]
        g = f.create_group("hidden")
        g.attrs["weight_names"] = [b"hidden/kernel:0"]
        g.create_dataset("hidden/kernel:0", shape=shape, dtype="f4", chunks=(1, 1))


def test_a_huge_declared_dataset_is_refused_before_it_is_read(model, tmp_path):
    """What took 4 GB in CI from a 44 KB corrupt file: 2**40 float32 declared."""
    path = tmp_path / "w.h5"
    _weights_file_declaring(path, (2**20, 2**20))
    assert path.stat().st_size < 100_000
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ModelFileError, match=r"w.h5 is corrupt or not a Keras file: dataset "
                                             r"/hidden/hidden/kernel:0 declares 4398046511104 "
                                             r"bytes"):
        model.load_weights(path)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_a_declared_size_within_the_limit_reads(model, tmp_path):
    """The same layout at the kernel's real shape: read (zeros), not refused."""
    path = tmp_path / "w.h5"
    _weights_file_declaring(path, (4, 5))
    with pytest.raises(ValueError, match="(?i)weight"):   # bias missing: a mismatch, read
        model.load_weights(path)
    assert h5_probe.check("w.h5", path=path) is None


def test_keras3_archive_weights_member_is_checked(model, tmp_path):
    """A .keras archive whose model.weights.h5 is the crashing file (zip CRCs intact)."""
    path = tmp_path / "m.keras"
    model.save(path)
    out = tmp_path / "bad.keras"
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(out, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename == "model.weights.h5":
                data = CRASH.read_bytes()
            zout.writestr(item, data)
    with pytest.raises(ModelFileError, match=r"bad.keras \(model.weights.h5\) is corrupt: "
                                             "libhdf5 crashed"):
        aslnet.models.load_model(out)
    with pytest.raises(ModelFileError, match="libhdf5 crashed"):
        model.load_weights(out)


def test_the_child_sees_exactly_the_bytes_given():
    """Bytes on stdin: an HDF5 image in memory reads through; truncated, it is not
    openable, which is the parent's to report (h5py's own error), not a refusal."""
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.attrs["a"] = np.arange(3)
        f["d"] = np.ones((2, 2))
    data = buf.getvalue()
    assert h5_probe.check("mem", data=data) is None
    assert h5_probe.check("mem", data=data[:100]) is None


def test_a_child_that_cannot_start_falls_back_with_a_warning(model, tmp_path, monkeypatch):
    path = tmp_path / "m.h5"
    model.save(path)

    def refuse(*a, **kw):
        raise OSError(11, "Resource temporarily unavailable")
    monkeypatch.setattr(h5_probe.subprocess, "run", refuse)
    with pytest.warns(RuntimeWarning, match="could not check .*m.h5 in a separate process"):
        aslnet.models.load_model(path, compile=False)


def test_the_child_dies_with_its_parent(tmp_path):
    """A parent killed while its child spins in libhdf5 (libFuzzer kills a slow input so)
    must not leave the child spinning: it dies with its parent."""
    import os
    import signal
    import sys
    import time
    hang = tmp_path / "hang.h5"
    hang.write_bytes((REPO_ROOT / "tests" / "fuzz" / "crashes" /
                      "h5-hdf5-hang-model-config.bin").read_bytes())
    code = ("import sys; from aslnet.saving import h5_probe\n"
            "h5_probe.TIMEOUT_S = 120\nh5_probe.check('x', path=sys.argv[1])\n")
    parent = subprocess.Popen([sys.executable, "-c", code, str(hang)], cwd=REPO_ROOT)

    def children():
        """Live processes running h5_probe.py on this file (from /proc: pgrep, started
        with the sanitizer stage's LD_PRELOAD=libasan, hung in CI)."""
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    argv = fh.read().split(b"\0")
            except OSError:
                continue
            if any(a.endswith(b"h5_probe.py") for a in argv) and str(hang).encode() in argv:
                found.append(int(pid))
        return found
    deadline = time.monotonic() + 20
    while not children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert children(), "the child did not start"
    time.sleep(1.0)                       # past its start-up: inside libhdf5
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert children() == []


@pytest.mark.parametrize("message, alloc", [
    ("Unable to synchronously read attribute (memory allocation failed for attribute)", 1),
    ("Can't read data (can't allocate space)", 1),
    ("Unable to read data (no space available for allocation)", 1),
    ("Unable to synchronously open object (bad object header version number)", 0),
    ("Can't read data (wrong B-tree signature)", 0)])
def test_libhdf5_allocation_failures_count_as_memory(message, alloc):
    """In the child (under its memory limit) libhdf5 reports a failed allocation as an
    ordinary read error; the parent, without that limit, could take gigabytes before
    failing: such an error refuses the file.  Other read errors are the parent's to
    report (None)."""
    def fail():
        raise OSError(message)
    if alloc:
        with pytest.raises(MemoryError):
            h5_probe._read(fail)
    else:
        assert h5_probe._read(fail) is None
