"""The default thread count (aslnet/backend.py): OMP_NUM_THREADS, else the CPUs this process may
run on (affinity mask) capped by its cgroup CPU quota; and that the C core's OpenMP runtime runs
that many threads, with OpenBLAS single-threaded inside it (csrc/common.c asl_sgemm)."""
import os
import subprocess
import sys

import pytest

import aslnet
from aslnet import backend

from .test_packaging import probe


@pytest.fixture
def no_limits(monkeypatch):
    """A process on 8 CPUs with no OMP_NUM_THREADS and no cgroup quota."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(backend, "_affinity_cpus", lambda: 8)
    monkeypatch.setattr(backend, "_cgroup_cpu_limit", lambda: None)


@pytest.mark.parametrize("value, threads", [("3", 3), (" 3,1 ", 3), ("2000", 1024)])
def test_omp_num_threads_is_honoured(no_limits, monkeypatch, value, threads):
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert backend.default_num_threads() == threads


@pytest.mark.parametrize("value", ["abc", "0", "-2", ",2"])
def test_a_bad_omp_num_threads_is_ignored_with_a_warning(no_limits, monkeypatch, value):
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    with pytest.warns(RuntimeWarning, match="OMP_NUM_THREADS.*not a positive integer"):
        assert backend.default_num_threads() == 8


def test_the_affinity_mask_and_the_cgroup_quota(no_limits, monkeypatch):
    assert backend.default_num_threads() == 8
    monkeypatch.setattr(backend, "_cgroup_cpu_limit", lambda: 2.5)     # docker --cpus 2.5
    assert backend.default_num_threads() == 3                          # rounded up
    monkeypatch.setattr(backend, "_cgroup_cpu_limit", lambda: 0.2)
    assert backend.default_num_threads() == 1
    monkeypatch.setattr(backend, "_affinity_cpus", lambda: 2)          # taskset -c 0,1
    monkeypatch.setattr(backend, "_cgroup_cpu_limit", lambda: 6.0)
    assert backend.default_num_threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "5")                         # the user's word wins
    assert backend.default_num_threads() == 5


def test_the_affinity_reader(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5})
    assert backend._affinity_cpus() == 3


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_cpu_max(tmp_path):
    root, proc = tmp_path / "cgroup", tmp_path / "proc_self_cgroup"
    _write(proc, "0::/system.slice/app.service\n")
    _write(root / "system.slice/app.service/cpu.max", "max 100000\n")
    assert backend._cgroup_cpu_limit(root, proc) is None                # unlimited
    _write(root / "system.slice/app.service/cpu.max", "150000 100000\n")
    assert backend._cgroup_cpu_limit(root, proc) == 1.5
    _write(root / "system.slice/cpu.max", "50000 100000\n")             # a parent's limit
    assert backend._cgroup_cpu_limit(root, proc) == 0.5
    _write(proc, "0::/\n")                                               # a container's view
    _write(root / "cpu.max", "400000 100000\n")
    assert backend._cgroup_cpu_limit(root, proc) == 4.0


def test_cgroup_v1_cfs_quota(tmp_path):
    root, proc = tmp_path / "cgroup", tmp_path / "proc_self_cgroup"
    _write(proc, "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n")
    mount = root / "cpu,cpuacct"
    _write(mount / "docker/abc/cpu.cfs_quota_us", "-1\n")
    _write(mount / "docker/abc/cpu.cfs_period_us", "100000\n")
    assert backend._cgroup_cpu_limit(root, proc) is None
    _write(mount / "docker/abc/cpu.cfs_quota_us", "200000\n")
    assert backend._cgroup_cpu_limit(root, proc) == 2.0
    _write(proc, "4:cpu,cpuacct:/not/visible/here\n")                   # the mount's own root
    _write(mount / "cpu.cfs_quota_us", "300000\n")
    _write(mount / "cpu.cfs_period_us", "100000\n")
    assert backend._cgroup_cpu_limit(root, proc) == 3.0
    assert backend._cgroup_cpu_limit(root, tmp_path / "no_such_file") is None


def test_set_num_threads_zero_or_none_is_the_default(no_limits, monkeypatch):
    saved = aslnet.get_num_threads()
    try:
        aslnet.set_num_threads(3)
        assert aslnet.get_num_threads() == 3
        for n in (0, None):
            aslnet.set_num_threads(n)
            assert aslnet.get_num_threads() == 8
        with pytest.raises(ValueError, match=r"num_threads must be in \[0, 1024\]"):
            aslnet.set_num_threads(-1)
    finally:
        aslnet.set_num_threads(saved)


@pytest.mark.parametrize("omp", ["1", "2"])
def test_the_c_core_runs_the_default_thread_count(omp):
    """In a fresh process with OMP_NUM_THREADS set, the OpenMP runtime holds that many threads
    after a predict (the C core's own fallback would be all cores), and OpenBLAS one: its own
    thread pool, spinning beside OpenMP's, oversubscribed the cores; asl_sgemm shares big
    products over the OpenMP team instead (tests/core/test_layers.py dense_split_*)."""
    report = probe({"OMP_NUM_THREADS": omp})
    assert report["threads"] == int(omp)
    assert report["omp"] == int(omp) and report["blas"] == 1, report


def test_the_default_is_the_affinity_mask_without_omp_num_threads():
    """Pinned to one CPU (as taskset or a scheduler would), with OMP_NUM_THREADS unset."""
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no affinity masks on this platform")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    cpu = min(os.sched_getaffinity(0))
    code = ("import os, aslnet; os.sched_setaffinity(0, {%d}); "
            "from aslnet import backend; print(backend.default_num_threads())" % cpu)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.stdout.strip() == "1", out.stderr
