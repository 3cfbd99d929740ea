"""Temporary files of saves killed outright (issue 12, item 8): a save killed
with ``kill -9`` keeps the previous file but cannot remove its temporary
file; the next save to the same target removes it, and never removes a
live save's temporary file or another target's."""
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import aslnet
from aslnet import layers as L
from aslnet.models import Model, load_model
from aslnet.saving import file_io

pytestmark = pytest.mark.skipif(os.name != "posix", reason="process ids and kill -9: POSIX")

# The child builds the same small model, then saves it to argv[1] with a
# writer that stops after the first dataset: it creates argv[2] to say so and
# waits there (for the kill).
CHILD = textwrap.dedent("""
    import pathlib, sys, time
    from aslnet import layers as L
    from aslnet.models import Model
    from aslnet.saving import h5_format

    inp = L.Input((8, 8, 3))
    model = Model(inp, L.Dense(2, activation="softmax")(L.GlobalAveragePooling2D()(
        L.Conv2D(4, 3)(inp))))
    real = h5_format._write_array

    def stalled(group, name, value):
        real(group, name, value)
        group.file.flush()
        pathlib.Path(sys.argv[2]).touch()
        time.sleep(300)

    h5_format._write_array = stalled
    model.save(sys.argv[1])
""")


def small_model():
    inp = L.Input((8, 8, 3))
    return Model(inp, L.Dense(2, activation="softmax")(L.GlobalAveragePooling2D()(
        L.Conv2D(4, 3)(inp))))


def start_stalled_save(target, tmp_path, tag):
    ready = tmp_path / f"ready-{tag}"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(target), str(ready)],
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not ready.exists():
        if proc.poll() is not None:
            raise AssertionError(f"child exited {proc.returncode}: {proc.stderr.read().decode()}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise AssertionError("child did not reach the stalled write in 120 s")
        time.sleep(0.05)
    return proc


def temps(directory, target_name):
    return sorted(n for n in os.listdir(directory)
                  if n.startswith(f".{target_name}.") and n.endswith(".tmp"))


@pytest.mark.parametrize("suffix", [".h5", ".aslnet"])
def test_kill_9_mid_save_then_next_save_removes_the_dead_ones_only(tmp_path, suffix):
    target = tmp_path / f"m{suffix}"
    model = small_model()
    model.save(target)
    before = target.read_bytes()
    x = np.random.default_rng(0).random((2, 8, 8, 3), dtype=np.float32)

    for k in range(3):
        proc = start_stalled_save(target, tmp_path, f"dead{k}")
        os.kill(proc.pid, 9)
        proc.wait()                               # reaped: its pid names no process now
        assert target.read_bytes() == before
        # one temporary file, the killed save's (each save removed the one before):
        # .m.h5.aslnet-<host>-<pid>-<random>.tmp
        left = temps(tmp_path, target.name)
        assert [int(n[len(target.name) + 2:-4].split("-")[2]) for n in left] == [proc.pid]
        assert file_io.stale_temps(str(tmp_path), target.name) == [str(tmp_path / left[0])]
        assert (tmp_path / left[0]).stat().st_size > 0
    model.save(target)
    assert temps(tmp_path, target.name) == []

    live = start_stalled_save(target, tmp_path, "live")
    try:
        live_temp = temps(tmp_path, target.name)
        assert len(live_temp) == 1 and f"-{live.pid}-" in live_temp[0]
        proc = start_stalled_save(target, tmp_path, "dead3")   # keeps the live one's
        os.kill(proc.pid, 9)
        proc.wait()
        assert len(temps(tmp_path, target.name)) == 2
        model.save(target)                        # removes the dead one, not the live one
        assert temps(tmp_path, target.name) == live_temp
        np.testing.assert_array_equal(load_model(target, compile=False).predict(x, verbose=0),
                                      model.predict(x, verbose=0))
    finally:
        live.kill()
        live.wait()
    model.save_weights(target)                    # save_weights cleans up the same way
    assert sorted(os.listdir(tmp_path)) == sorted(
        [target.name, "ready-dead0", "ready-dead1", "ready-dead2", "ready-dead3", "ready-live"])


def _fake_temp(directory, target_name, host, pid, age=0.0):
    path = directory / f".{target_name}.aslnet-{host}-{pid}-{os.urandom(4).hex()}.tmp"
    path.write_bytes(b"partial")
    if age:
        t = time.time() - age
        os.utime(path, (t, t))
    return path.name


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_only_stale_temporaries_of_the_same_target_go(tmp_path):
    here, dead = file_io._host_tag(), _dead_pid()
    other_host = "0" * 8 if here != "0" * 8 else "1" * 8
    day = file_io._STALE_SECONDS
    stale = [_fake_temp(tmp_path, "m.h5", here, dead),
             _fake_temp(tmp_path, "m.h5", other_host, 12345, age=day + 60)]
    kept = [
        _fake_temp(tmp_path, "m.h5", here, os.getpid()),            # this process: live
        _fake_temp(tmp_path, "m.h5", here, os.getppid(), age=10 * day),  # live, however old
        _fake_temp(tmp_path, "m.h5", other_host, 12345, age=day - 60),   # recent, other host
        _fake_temp(tmp_path, "m.h5.bak", here, dead),               # another target
        _fake_temp(tmp_path, "m", here, dead),                      # another target
        ".m.h5.abcd1234.tmp",                                       # not named by aslnet
        ".m.h5.aslnet-zz-1-0123abcd.tmp",
    ]
    for name in kept[-2:]:
        (tmp_path / name).write_bytes(b"x")
    small_model().save(tmp_path / "m.h5")
    assert sorted(os.listdir(tmp_path)) == sorted(kept + ["m.h5"])
    assert not any((tmp_path / n).exists() for n in stale)


def test_a_cleanup_that_fails_does_not_fail_the_save(tmp_path, monkeypatch):
    def unreadable(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(file_io, "stale_temps", unreadable)
    small_model().save(tmp_path / "m.h5")
    assert os.listdir(tmp_path) == ["m.h5"]


@pytest.fixture(autouse=True)
def _fresh_names():
    aslnet.clear_session()
    yield
    aslnet.clear_session()
