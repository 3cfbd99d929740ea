"""Synchronized batch normalization (csrc/batch_norm.c, Keras's synchronized=True) through
``Net.set_allreduce``: the statistics and the backward sums of the global batch.

The ranks of a data-parallel job are played by threads here, each with its own ``Net`` and
slice of the batch; a barrier sums their buffers in rank order (what MPI's Allreduce does
for the real job, tests/distribution).  References are the float64 formulas of
tests/core/test_batch_norm.py on the whole batch.

Tolerances: the synchronized path sums in double and rounds the statistics to float32
once, so its y, dx and gradients carry a few float32 roundings of the float64 values:
absolute 5e-6 on y (|y| <= ~10), 1e-6 on dx (|dx| <= 0.5) and 2e-5 on the parameter
gradients (sums of 60 terms of size <= ~3: float32 rounding of the result and of the
inputs), the bounds test_batch_norm.py justifies for oneDNN's float32 sums, which are
looser than this path needs.
"""
import threading

import numpy as np
import pytest

from tests.core.test_batch_norm import C, EPS, H, MOM, N, W, _data, _params, _train_ref

_core = pytest.importorskip("aslnet._core")


def _net(params, synchronized=True):
    net = _core.Net((H, W, C))
    net.add("batch_normalization", momentum=MOM, epsilon=EPS, synchronized=synchronized)
    for j, v in enumerate(params):
        net.set_param(0, j, v)
    return net


class Ranks:
    """``size`` threads standing for the processes: rank r's reducer stores its buffer,
    waits for the others and takes the sum in rank order."""

    def __init__(self, size):
        self.size, self.parts, self.calls = size, [None] * size, []
        self.barrier = threading.Barrier(size)

    def reducer(self, rank):
        def allreduce(buf):
            assert buf.dtype == np.float64 and buf.ndim == 1
            self.parts[rank] = buf.copy()
            self.barrier.wait(timeout=60)
            total = self.parts[0].copy()
            for part in self.parts[1:]:
                total += part
            self.barrier.wait(timeout=60)
            if rank == 0:
                self.calls.append(buf.size)
            buf[:] = total
        return allreduce

    def run(self, work):
        """work(rank) on every rank's thread; the results, or the first error raised."""
        out, errors = [None] * self.size, []

        def body(r):
            try:
                out[r] = work(r)
            except BaseException as e:   # noqa: BLE001 (re-raised below)
                errors.append(e)
                self.barrier.abort()

        threads = [threading.Thread(target=body, args=(r,)) for r in range(self.size)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        if errors:
            raise errors[0]
        return out


def _step(net, x, dy):
    y = net.forward(x, training=True)
    dx = net.backward(dy, need_dx=True)
    return y, dx, [net.grad(0, 0).copy(), net.grad(0, 1).copy()], \
        [net.get_param(0, 2), net.get_param(0, 3)]


@pytest.mark.parametrize("cut", [1, 2])          # slices of 1 and 3 (uneven), 2 and 2
def test_two_ranks_normalise_with_the_global_batch(cut):
    params = _params()
    x, dy = _data()
    m, v, xh, dx_ref, dg_ref, db_ref = _train_ref(x, dy, params[0].astype(np.float64))
    y_ref = params[0] * xh + params[1]
    spans = [(0, cut), (cut, N)]
    w = [(hi - lo) / N for lo, hi in spans]      # each slice's share of the global batch
    ranks = Ranks(2)

    def work(r):
        lo, hi = spans[r]
        net = _net(params)
        net.set_allreduce(ranks.reducer(r))
        # rank r's loss is the mean over its slice: its dy is the global one over w[r]
        return _step(net, x[lo:hi], dy[lo:hi] / np.float32(w[r]))

    results = ranks.run(work)
    assert ranks.calls == [C + 1, C, 2 * C]      # sums and N, squared deviations, backward
    for r, (y, dx, grads, moving) in enumerate(results):
        lo, hi = spans[r]
        np.testing.assert_allclose(y, y_ref[lo:hi], rtol=0, atol=5e-6)
        np.testing.assert_allclose(dx * w[r], dx_ref[lo:hi], rtol=0, atol=1e-6)
        np.testing.assert_allclose(moving[0], MOM * params[2] + (1 - MOM) * m, atol=1e-6)
        np.testing.assert_allclose(moving[1], MOM * params[3] + (1 - MOM) * v, atol=1e-6)
    # the caller weights each rank's parameter gradients by w and sums them
    dg = sum(w[r] * results[r][2][0].astype(np.float64) for r in range(2))
    db = sum(w[r] * results[r][2][1].astype(np.float64) for r in range(2))
    np.testing.assert_allclose(dg, dg_ref, rtol=0, atol=2e-5)
    np.testing.assert_allclose(db, db_ref, rtol=0, atol=2e-5)
    # every rank moved its moving statistics identically
    for a, b in zip(results[0][3], results[1][3]):
        np.testing.assert_array_equal(a, b)


def test_one_rank_is_plain_batch_norm():
    """With one process (a reducer that sums one buffer) the synchronized path computes
    the ordinary training batch norm."""
    params = _params(3)
    x, dy = _data(4)
    ranks = Ranks(1)
    net = _net(params)
    net.set_allreduce(ranks.reducer(0))
    y, dx, grads, moving = _step(net, x, dy)
    plain = _step(_net(params, synchronized=False), x, dy)
    np.testing.assert_allclose(y, plain[0], rtol=0, atol=5e-6)
    np.testing.assert_allclose(dx, plain[1], rtol=0, atol=1e-6)
    for a, b in zip(grads + moving, plain[2] + plain[3]):
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-5)
    assert ranks.calls == [C + 1, C, 2 * C]


def test_the_reducer_is_only_called_where_it_matters():
    """Not called by an unsynchronized batch norm, nor in inference, nor by a frozen one;
    without a reducer synchronized=True changes nothing (Keras, one process)."""
    params = _params()
    x, dy = _data()
    calls = []
    plain = _net(params, synchronized=False)
    plain.set_allreduce(calls.append)
    ref = _step(plain, x, dy)
    synced = _net(params)
    synced.set_allreduce(calls.append)
    synced.forward(x, training=False)
    synced.set_trainable(0, False)
    synced.forward(x, training=True)
    assert calls == []
    alone = _step(_net(params), x, dy)           # synchronized, no reducer: bit for bit
    for a, b in zip((alone[0], alone[1], *alone[2]), (ref[0], ref[1], *ref[2])):
        np.testing.assert_array_equal(a, b)


def test_a_failing_reducer_raises_its_own_error_and_the_net_recovers():
    params = _params()
    x, dy = _data()
    net = _net(params)

    def broken(buf):
        raise TimeoutError("rank 1 did not answer")

    net.set_allreduce(broken)
    with pytest.raises(TimeoutError, match="rank 1 did not answer"):
        net.forward(x, training=True)
    np.testing.assert_array_equal(net.get_param(0, 2), params[2])   # moving stats untouched
    net.set_allreduce(lambda buf: None)          # one process
    y = net.forward(x, training=True)
    assert np.isfinite(y).all()
    with pytest.raises(TypeError, match="set_allreduce: expected a callable"):
        net.set_allreduce(3)
