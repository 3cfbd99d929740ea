"""Batch normalization (csrc/batch_norm.c): what the generic layer harness
does not cover -- Keras 3 moving-average update (biased batch variance),
training vs inference vs frozen behaviour, gradients in each mode."""

import numpy as np
import pytest

_core = pytest.importorskip("aslnet._core")

N, H, W, C = 4, 5, 3, 7
EPS, MOM = 1e-3, 0.9
# Tolerances (absolute, vs float64): each statistic and parameter gradient is a sum of
# K = N*H*W = 60 float32 terms per channel.  oneDNN sums in vector lanes and then a
# tree (blocked, on every ISA), whose error is <= ~log2(K) u sum|terms| (u = 6e-8),
# against K u sum|terms| for one serial sum.  Here sum|dy * xh| <= 46 and
# sum|dy| <= 58 per channel: 6 x 6e-8 x 58 = 2.1e-5 -> the gradients' 2e-5 (5e-5 for
# inference-mode dgamma, whose terms carry (x - mean) / std up to 5); y and dx are a
# few roundings of values <= ~10: 5e-6 / 1e-5 (y), 1e-6 (dx, values <= 0.5).  Measured
# identical with ONEDNN_MAX_CPU_ISA=AVX2, AVX512_CORE, SSE41 and the default:
# <= 1/8 of each bound.


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(1, 0.5, C).astype(np.float32),      # gamma
            rng.normal(0, 0.5, C).astype(np.float32),      # beta
            rng.normal(0, 1, C).astype(np.float32),        # moving_mean
            rng.uniform(0.5, 2, C).astype(np.float32))     # moving_variance


def _net(params, trainable=True):
    net = _core.Net((H, W, C))
    net.add("batch_normalization", momentum=MOM, epsilon=EPS)
    for j, v in enumerate(params):
        net.set_param(0, j, v)
    net.set_trainable(0, trainable)
    return net


def _data(seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(2, 3, (N, H, W, C)).astype(np.float32)
    dy = rng.normal(size=(N, H, W, C)).astype(np.float32)
    return x, dy


def _train_ref(x, dy, gamma):
    """float64 batch-statistics forward and backward."""
    X, DY = x.astype(np.float64), dy.astype(np.float64)
    m, v = X.mean((0, 1, 2)), X.var((0, 1, 2))          # biased variance
    rstd = 1 / np.sqrt(v + EPS)
    xh = (X - m) * rstd
    cnt = X.size // C
    db, dg = DY.sum((0, 1, 2)), (DY * xh).sum((0, 1, 2))
    dx = gamma * rstd / cnt * (cnt * DY - db - xh * dg)
    return m, v, xh, dx, dg, db


def test_defaults_and_param_order():
    net = _core.Net((H, W, C))
    net.add("batch_normalization")
    info = net.params(0)
    assert [p["name"] for p in info] == ["gamma", "beta", "moving_mean",
                                         "moving_variance"]
    assert [p["is_weight"] for p in info] == [True, True, False, False]
    for j, val in enumerate([1, 0, 0, 1]):
        np.testing.assert_array_equal(net.get_param(0, j), np.full(C, val, np.float32))


def test_training_forward_backward_and_moving_update():
    params = _params()
    gamma, beta, mm, mv = (p.astype(np.float64) for p in params)
    x, dy = _data()
    net = _net(params)
    y = net.forward(x, training=True)
    m, v, xh, dx_ref, dg, db = _train_ref(x, dy, gamma)
    np.testing.assert_allclose(y, gamma * xh + beta, atol=5e-6)
    # Keras 3: moving = moving * momentum + stat * (1 - momentum), biased var
    np.testing.assert_allclose(net.get_param(0, 2), mm * MOM + m * (1 - MOM), atol=1e-6)
    np.testing.assert_allclose(net.get_param(0, 3), mv * MOM + v * (1 - MOM), rtol=1e-6)
    dx = net.backward(dy, need_dx=True)
    np.testing.assert_allclose(dx, dx_ref, atol=1e-6)
    np.testing.assert_allclose(net.grad(0, 0), dg, atol=2e-5)
    np.testing.assert_allclose(net.grad(0, 1), db, atol=2e-5)
    assert net.grad(0, 2) is None and net.grad(0, 3) is None

    # second step compounds on the updated statistics
    mm1, mv1 = net.get_param(0, 2).astype(np.float64), net.get_param(0, 3).astype(np.float64)
    x2 = x[::-1] * 0.5 + 1
    net.forward(x2, training=True)
    X2 = x2.astype(np.float64)
    np.testing.assert_allclose(net.get_param(0, 2), mm1 * MOM + X2.mean((0, 1, 2)) * (1 - MOM), atol=1e-6)
    np.testing.assert_allclose(net.get_param(0, 3), mv1 * MOM + X2.var((0, 1, 2)) * (1 - MOM), rtol=1e-6)


def test_training_gradients_without_dx():
    """BN as the first trainable layer: no dx, gamma/beta grads still right."""
    params = _params()
    x, dy = _data()
    net = _net(params)
    net.forward(x, training=True)
    net.backward(dy, need_dx=False)
    _, _, _, _, dg, db = _train_ref(x, dy, params[0].astype(np.float64))
    np.testing.assert_allclose(net.grad(0, 0), dg, atol=2e-5)
    np.testing.assert_allclose(net.grad(0, 1), db, atol=2e-5)


def test_training_dx_finite_differences():
    params = _params()
    x, dy = _data()
    net = _net(params)
    net.forward(x, training=True)
    dx = net.backward(dy, need_dx=True)
    w = dy.astype(np.float64)

    def loss(xx):
        return float((net.forward(xx, training=True).astype(np.float64) * w).sum())

    e = 1e-2
    for idx in [(0, 0, 0, 0), (1, 2, 1, 3), (3, 4, 2, 6), (2, 1, 0, 5)]:
        xp, xm = x.copy(), x.copy()
        xp[idx] += e
        xm[idx] -= e
        fd = (loss(xp) - loss(xm)) / (2 * e)
        assert abs(fd - dx[idx]) < 2e-3 * max(1.0, abs(dx[idx]))


def _infer_ref(x, dy, params):
    gamma, beta, mm, mv = (p.astype(np.float64) for p in params)
    X, DY = x.astype(np.float64), dy.astype(np.float64)
    rstd = 1 / np.sqrt(mv + EPS)
    y = gamma * (X - mm) * rstd + beta
    return y, DY * gamma * rstd, (DY * (X - mm) * rstd).sum((0, 1, 2)), DY.sum((0, 1, 2))


def test_inference_uses_moving_stats_and_gives_grads():
    params = _params()
    x, dy = _data()
    net = _net(params)
    y = net.forward(x, training=False)
    y_ref, dx_ref, dg, db = _infer_ref(x, dy, params)
    np.testing.assert_allclose(y, y_ref, atol=1e-5)
    np.testing.assert_array_equal(net.get_param(0, 2), params[2])
    np.testing.assert_array_equal(net.get_param(0, 3), params[3])
    np.testing.assert_allclose(net.backward(dy, need_dx=True), dx_ref, atol=1e-6)
    np.testing.assert_allclose(net.grad(0, 0), dg, atol=5e-5)
    np.testing.assert_allclose(net.grad(0, 1), db, atol=2e-5)


def test_frozen_layer_runs_inference_in_training():
    """A frozen BN in a training network: moving stats, no update, no
    gamma/beta gradients, dx through the affine inference transform."""
    params = _params()
    x, dy = _data()
    net = _net(params, trainable=False)
    y = net.forward(x, training=True)
    y_ref, dx_ref, _, _ = _infer_ref(x, dy, params)
    np.testing.assert_allclose(y, y_ref, atol=1e-5)
    np.testing.assert_array_equal(net.get_param(0, 2), params[2])
    np.testing.assert_array_equal(net.get_param(0, 3), params[3])
    np.testing.assert_allclose(net.backward(dy, need_dx=True), dx_ref, atol=1e-6)
    assert net.grad(0, 0) is None and net.grad(0, 1) is None


def test_batch_size_change():
    params = _params()
    x, _ = _data()
    net = _net(params)
    for xx in (x[:2], x, x[:1]):
        y = net.forward(xx, training=False)
        np.testing.assert_allclose(y, _infer_ref(xx, xx, params)[0], atol=1e-5)


@pytest.mark.parametrize("kw", [{"epsilon": 0.0}, {"epsilon": float("nan")},
                                {"momentum": float("inf")}])
def test_bad_arguments_rejected(kw):
    net = _core.Net((H, W, C))
    with pytest.raises(Exception, match="batch_normalization"):
        net.add("batch_normalization", **kw)
