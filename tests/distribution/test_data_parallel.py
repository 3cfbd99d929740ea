"""aslnet.distribution.DataParallel: ``mpirun -n 2 python -m mpi4py`` against one process.

The comparison (``test_two_ranks_match_one_process``) trains tests/distribution/dp_script.py
(two Conv2D, two Dense, with or without a frozen BatchNormalization; global batch 7, so the
ranks' slices are 3 and 4, and the last batch of 5 splits 2 and 3: the uneven weighting is
exercised; with 36 samples the last batch of 1 leaves rank 0 nothing) for 2 epochs (12
steps) in one process and on two ranks, and compares the weights.

Why they differ at all, and the bound: both runs compute the same per-sample terms; the
two ranks sum each gradient's per-sample contributions in two partial sums (then the
Allreduce adds the two, weighted by 3/7 and 4/7), one process in one sum over the batch.
Float32 summation of k terms reassociated differs by at most ~k·eps·Σ|terms| (eps = 6e-8);
with k <= 7 and Σ|terms| <= ~20 for this model (inputs in [0, 1], softmax gradients below
1), each gradient element differs by less than delta = 1e-5 per step (forward kernels picked
for another batch size reassociate similarly and stay inside it).
* SGD (lr 0.1): each step moves a weight by lr·g, so after T = 12 steps the difference is
  at most T·lr·delta = 1.2e-5, doubled for the differences the weights feed back into later
  gradients (the model is small and the steps contract): atol 2.4e-5.
* Adam (lr 0.01, epsilon 1e-3): the update lr·m/(sqrt(v) + epsilon) changes by at most about
  2·lr·delta/epsilon = 2e-4 per step for any gradient, even one at the round-off level
  (the reason for the large epsilon: with Keras's 1e-7 a gradient made of round-off would
  be normalised to a full step of either sign), so T steps: atol 2.4e-3.
With a trainable BatchNormalization(synchronized=True) the two ranks normalise with the
global batch's statistics (sums in double, reduced; csrc/batch_norm.c) and one process with
oneDNN's float32 batch statistics: the same values up to float32 reassociation of sums of
7 x 64 terms (<= ~log2(448) eps relative), inside the same bounds (measured: 6e-8 after the
12 SGD steps).  Unsynchronized (each rank normalises its slice) the weights differ by 1.6e-3
(measured), which ``test_unsynchronized_batch_norm_is_not_the_global_batch`` checks stays
far outside the bound: the comparison sees the difference synchronization makes.
The losses in History are means of float32 losses summed in float64 in another order:
rtol 1e-5.  The ranks' own values must be identical (the Allreduce hands every rank the
same sums), and only rank 0 prints.
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import aslnet
from aslnet import backend
from aslnet import distribution as dist

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "dp_script.py")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(aslnet.__file__)))
TOL = {"sgd": 2.4e-5, "adam": 2.4e-3}


def _env():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    return env


def _mpirun():
    beside = os.path.join(os.path.dirname(sys.executable), "mpirun")
    return beside if os.path.exists(beside) else shutil.which("mpirun")


@pytest.fixture(scope="module")
def mpirun():
    """The launcher, once checked to start two ranks (else skip, saying why)."""
    pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install mpi4py mpich)")
    launcher = _mpirun()
    if launcher is None:
        pytest.skip("no mpirun (pip install mpich)")
    cmd = [launcher, "-n", "2", sys.executable, "-m", "mpi4py", "-c",
           "from mpi4py import MPI; c = MPI.COMM_WORLD; n = c.allreduce(1); "
           "c.Get_rank() or print('ranks', n)"]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=_env())
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"mpirun cannot start 2 ranks here: {e}")
    if r.returncode != 0 or r.stdout.split() != ["ranks", "2"]:
        pytest.skip(f"mpirun cannot start 2 ranks here: rc {r.returncode}, "
                    f"{(r.stdout + r.stderr)[-500:]}")
    return launcher


def _load(path):
    with np.load(path) as f:
        return json.loads(str(f["history"])), {k: f[k] for k in f.files if k != "history"}


@pytest.mark.parametrize("optimizer,bn,samples,source", [
    ("sgd", "none", 40, "arrays"), ("adam", "none", 40, "arrays"),
    ("sgd", "frozen", 40, "arrays"), ("adam", "frozen", 40, "arrays"),
    ("sgd", "sync", 40, "arrays"), ("adam", "sync", 40, "arrays"),
    ("sgd", "sync", 40, "flow"),          # an augmenting image iterator, decoded per slice
    ("sgd", "none", 36, "arrays"),        # 36: the last batch has 1 sample, rank 0's
    ("sgd", "sync", 36, "arrays")])       # slice is empty
def test_two_ranks_match_one_process(mpirun, tmp_path, optimizer, bn, samples, source):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    r1 = subprocess.run([sys.executable, SCRIPT, str(one), optimizer, bn, str(samples),
                         source], capture_output=True, text=True, timeout=120, env=_env())
    assert r1.returncode == 0, r1.stderr[-3000:]
    r2 = subprocess.run([mpirun, "-n", "2", sys.executable, "-m", "mpi4py", SCRIPT, str(two),
                         optimizer, bn, str(samples), source], capture_output=True, text=True,
                        timeout=120, env=_env())
    assert r2.returncode == 0, (r2.stdout + r2.stderr)[-3000:]
    hist1, w1 = _load(one / "rank0.npz")
    hist_a, wa = _load(two / "rank0.npz")
    hist_b, wb = _load(two / "rank1.npz")
    assert hist_a == hist_b                                  # every rank decided alike
    for name in w1:
        np.testing.assert_array_equal(wa[name], wb[name], err_msg=name)   # in step
        np.testing.assert_allclose(wa[name], w1[name], rtol=0, atol=TOL[optimizer],
                                   err_msg=name)
    assert hist1.keys() == hist_a.keys()
    for key in hist1:
        np.testing.assert_allclose(hist_a[key], hist1[key], rtol=1e-5, err_msg=key)
    assert r2.stdout.count("Epoch 1/2") == 1 and r2.stdout.count("Epoch 2/2") == 1, r2.stdout
    assert r1.stdout.count("Epoch 1/2") == 1
    assert r2.stdout.count("Epoch 1: val_loss improved") == 1, r2.stdout   # ModelCheckpoint
    assert (two / "model.keras").exists() and (two / "best.keras").exists()


def test_unsynchronized_batch_norm_is_not_the_global_batch(mpirun, tmp_path):
    runs = {}
    for name, cmd in (("one", [sys.executable]),
                      ("two", [mpirun, "-n", "2", sys.executable, "-m", "mpi4py"])):
        (tmp_path / name).mkdir()
        r = subprocess.run(cmd + [SCRIPT, str(tmp_path / name), "sgd", "local", "40"],
                           capture_output=True, text=True, timeout=120, env=_env())
        assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
        runs[name] = _load(tmp_path / name / "rank0.npz")[1]
    gap = max(float(np.abs(runs["one"][k] - runs["two"][k]).max()) for k in runs["one"])
    assert gap > 10 * TOL["sgd"], gap       # measured 1.6e-3


DIES = """
import numpy as np
import aslnet
from aslnet import distribution as dist
dist.set_distribution(dist.DataParallel())
inputs = aslnet.Input((4,))
model = aslnet.Model(inputs, aslnet.layers.Dense(2, activation="softmax")(inputs))
model.compile("sgd", "sparse_categorical_crossentropy")
if dist.process_id() == 1:
    raise RuntimeError("rank 1 dies")
model.fit(np.zeros((8, 4), np.float32), np.zeros(8, int), epochs=1, verbose=0)  # waits on rank 1
"""


def test_a_rank_that_dies_ends_the_job(mpirun):
    """Under ``python -m mpi4py`` (the documented launcher) a rank's exception aborts the
    job: rank 0, waiting for rank 1 in fit, does not hang."""
    r = subprocess.run([mpirun, "-n", "2", sys.executable, "-m", "mpi4py", "-c", DIES],
                       capture_output=True, text=True, timeout=120, env=_env())
    assert r.returncode != 0 and "rank 1 dies" in r.stderr, (r.stdout + r.stderr)[-3000:]


# -- one process, no launcher ---------------------------------------------------------------
@pytest.fixture
def restore():
    yield
    dist.set_distribution(None)


NO_OP = """
import json, sys
import numpy as np
import aslnet
from aslnet import distribution as dist


def train():
    aslnet.set_random_seed(3)
    inputs = aslnet.Input((6, 6, 2))
    h = aslnet.layers.Conv2D(3, 3, activation="relu")(inputs)
    h = aslnet.layers.GlobalAveragePooling2D()(h)
    model = aslnet.Model(inputs, aslnet.layers.Dense(3, activation="softmax")(h))
    model.compile(optimizer=aslnet.optimizers.Adam(0.01),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    r = np.random.default_rng(1)
    x, y = r.uniform(0, 1, (20, 6, 6, 2)).astype(np.float32), r.integers(0, 3, 20)
    aslnet.set_random_seed(5)
    hist = model.fit(x, y, batch_size=6, epochs=2, verbose=0, validation_split=0.2)
    return hist.history, model.get_weights()


base_hist, base = train()
dp = dist.DataParallel()
dist.set_distribution(dp)
assert dist.distribution() is dp and (dp.rank, dp.size) == (0, 1)
assert dist.list_devices() == ["cpu:0"] and dist.list_devices("gpu") == []
assert dist.process_id() == 0 and dist.num_processes() == 1
hist, weights = train()
assert hist == base_hist, (hist, base_hist)
assert all(np.array_equal(a, b) for a, b in zip(weights, base))
dist.set_distribution(None)
assert dist.distribution() is None
print("same")
"""


def test_world_of_one_is_a_no_op():
    """DataParallel in one process started without a launcher: the same bits as no
    distribution (in a subprocess: MPI is initialised once per process)."""
    pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install mpi4py mpich)")
    r = subprocess.run([sys.executable, "-c", NO_OP], capture_output=True, text=True,
                       timeout=120, env=_env())
    assert r.returncode == 0 and r.stdout.split() == ["same"], (r.stdout + r.stderr)[-3000:]


def _small_model():
    aslnet.set_random_seed(3)
    inputs = aslnet.Input((6, 6, 2))
    h = aslnet.layers.Conv2D(3, 3, activation="relu")(inputs)
    h = aslnet.layers.GlobalAveragePooling2D()(h)
    return aslnet.Model(inputs, aslnet.layers.Dense(3, activation="softmax")(h))


def test_without_mpi4py_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)       # import mpi4py raises
    with pytest.raises(ImportError, match=r"pip install mpi4py mpich"):
        dist.DataParallel()


def test_set_distribution_refuses_others(restore):
    with pytest.raises(TypeError, match="DataParallel"):
        dist.set_distribution("data_parallel")


def test_device_mesh_refused():
    with pytest.raises(NotImplementedError, match="device_mesh"):
        dist.DataParallel(device_mesh=object())


class _FakeComm:
    """Two ranks' answers to allgather, as rank 0 sees them."""

    def __init__(self, other):
        self.other = other

    def allgather(self, value):
        return [value, self.other(value)]


class _FakeDist:
    def __init__(self, comm):
        self.comm, self.rank, self.size, self._bn_warned = comm, 0, 2, False


def _replicas(other):
    from aslnet.trainers.distributed import Replicas      # (MPI itself is not started)
    return Replicas(_FakeDist(_FakeComm(other)))


def test_ranks_that_disagree_get_a_clear_error():
    rep = _replicas(lambda v: v[:-1] if isinstance(v, list) else v)
    with pytest.raises(ValueError, match=r"disagree on the model's weight shapes .*rank 1"):
        rep.start_fit(_small_model(), None, 4, np.zeros(10))


def test_only_unsynchronized_trainable_batch_norm_warns():
    aslnet.set_random_seed(3)
    inputs = aslnet.Input((6, 6, 2))
    h = aslnet.layers.BatchNormalization(synchronized=True)(inputs)
    h = aslnet.layers.GlobalAveragePooling2D()(h)
    model = aslnet.Model(inputs, aslnet.layers.Dense(3, activation="softmax")(h))
    rep = _replicas(lambda v: v)
    rep.comm.Bcast = lambda *a, **k: None
    rep.comm.bcast = lambda v, root=0: v
    rep.start_fit(model, None, 4, np.zeros(10))           # no warning: synchronized
    assert not rep.dist._bn_warned
    model.layers[1].synchronized = False
    with pytest.warns(UserWarning, match="per-process batch statistics"):
        rep.start_fit(model, None, 4, np.zeros(10))


def test_slices_cover_the_batch():
    rep = _replicas(lambda v: v)
    spans = []
    for rank in range(3):
        rep.rank, rep.size = rank, 3
        spans.append(rep.span(7))
    assert spans == [(0, 2), (2, 4), (4, 7)]


def test_threads_shared_between_local_processes(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(backend, "_affinity_cpus", lambda: 8)
    monkeypatch.setattr(backend, "_cgroup_cpu_limit", lambda: None)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setattr(backend, "_threads_set", False)
    before = backend._num_threads
    try:
        backend._set_local_processes(2)
        assert backend.default_num_threads() == 4 and backend.get_num_threads() == 4
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        assert backend.default_num_threads() == 3          # OMP_NUM_THREADS wins
    finally:
        backend._set_local_processes(1)
        backend._num_threads = before
