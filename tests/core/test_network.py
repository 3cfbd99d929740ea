"""Whole-network behaviour of the C core: optimizer steps, the train_step loss and its fused
softmax gradient, frozen layers, and MobileNet v1 gradients vs an independent PyTorch model.

(a) SGD (plain, momentum, Nesterov) and Adam steps of ``apply_gradients`` (after a real
    backward) vs the textbook Keras formulas in float64 and vs ``torch.optim.SGD``.
(b) ``train_step`` loss = Keras categorical cross-entropy of a softmax output (from the
    logits, as compiled Keras models compute it: no 1e-7 clip; batch mean); the fused gradient (p * sum(y) - y) / n vs NumPy and vs
    the unfused path (softmax backward of dL/dp).
(c) frozen layers: parameters bit-identical, no backward work below the earliest
    trainable layer, no optimizer slots, frozen batch norm in inference mode.
(d) MobileNet v1 (alpha 0.25, 64x64, batch 4) in training mode: every parameter gradient
    vs ``tests/reference/torch_mobilenet.py`` (float64), and the moving statistics.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.reference import numpy_ops as ref
from tests.reference.params import random_param

_core = pytest.importorskip("aslnet._core")
torch = pytest.importorskip("torch")

EPS32 = float(np.finfo(np.float32).eps) / 2


def _f32(v):
    """The float32 value the C core stores for a Python float (momentum, epsilon, ...)."""
    return float(np.float32(v))


# ---------------------------------------------------------------- a small test network

SMALL = [("conv2d", dict(filters=4, kernel_size=3, padding="same")),
         ("batch_normalization", {}),
         ("activation", dict(activation="relu")),
         ("global_average_pooling2d", {}),
         ("dense", dict(units=5, activation="softmax"))]


def _small_net(seed=0, shape=(5, 5, 3)):
    rng = np.random.default_rng(seed)
    net = _core.Net(shape)
    for kind, cfg in SMALL:
        net.add(kind, **cfg)
    for i in range(net.num_layers):
        for j, info in enumerate(net.params(i)):
            if info["name"] == "gamma":
                v = rng.uniform(0.5, 1.5, info["shape"])
            elif info["name"] == "moving_variance":
                v = rng.uniform(0.5, 2, info["shape"])
            else:
                v = rng.normal(0, 0.5, info["shape"])
            net.set_param(i, j, v.astype(np.float32))
    x = rng.normal(size=(3, *shape)).astype(np.float32)
    return net, x, rng


def _weights(net):
    """{(i, j): float32 copy} of every trainable weight (not statistics)."""
    return {(i, j): net.get_param(i, j) for i in range(net.num_layers)
            for j, info in enumerate(net.params(i)) if info["is_weight"]}


def _backward_once(net, x, rng):
    """forward(training) + backward with a random dy; returns {(i, j): grad}."""
    y = net.forward(x, training=True)
    net.backward(rng.normal(size=y.shape).astype(np.float32))
    return {k: net.grad(*k).astype(np.float64) for k in _weights(net)}


def _close(got, want, what):
    """Optimizer arithmetic is a handful of float32 roundings per element and step, each
    <= eps32 * |w| ~ 6e-8 for |w| ~ 1: 1e-6 (relative to max(1, max|want|)) holds a few
    steps with margin and fails any formula error (which is of the order of lr * |g|)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    err = np.abs(got - want).max() / max(1.0, np.abs(want).max())
    assert err <= 1e-6, f"{what}: max error {err:.3g}"


# ---------------------------------------------------------------- (a) optimizers


@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True)],
                         ids=["plain", "momentum", "nesterov"])
def test_sgd_matches_keras_formula_and_torch(momentum, nesterov):
    lr, steps = 0.05, 4
    net, x, rng = _small_net()
    net.set_optimizer("sgd", learning_rate=lr, momentum=momentum, nesterov=nesterov)
    w = {k: v.astype(np.float64) for k, v in _weights(net).items()}
    vel = {k: np.zeros_like(v) for k, v in w.items()}
    tparams = {k: torch.tensor(v, requires_grad=True) for k, v in w.items()}
    topt = torch.optim.SGD(list(tparams.values()), lr=lr, momentum=momentum,
                           nesterov=nesterov)
    for step in range(1, steps + 1):
        g = _backward_once(net, x, rng)
        net.apply_gradients()
        assert net.iterations == step
        # Keras SGD: v = m v - lr g; w += v (plain: w -= lr g; Nesterov: w += m v - lr g)
        lr_, m_ = _f32(lr), _f32(momentum)
        for k in w:
            if momentum == 0:
                w[k] = w[k] - lr_ * g[k]
            else:
                vel[k] = m_ * vel[k] - lr_ * g[k]
                w[k] = w[k] + (m_ * vel[k] - lr_ * g[k] if nesterov else vel[k])
            tparams[k].grad = torch.tensor(g[k])
        topt.step()
        for k in w:
            c = net.get_param(*k)
            _close(c, w[k], f"step {step} param {k} vs Keras formula")
            _close(c, tparams[k].detach().numpy(), f"step {step} param {k} vs torch SGD")
            slot = net.slot(*k, 0)
            if momentum == 0:
                assert slot is None                     # plain SGD keeps no state
            else:
                _close(slot, vel[k], f"step {step} velocity {k}")
                # torch's buffer b = m b + g is the Keras velocity divided by -lr
                buf = topt.state[tparams[k]]["momentum_buffer"].numpy()
                _close(slot, -lr_ * buf, f"step {step} velocity {k} vs torch")
    for i in range(net.num_layers):   # statistics are never optimizer slots
        for j, info in enumerate(net.params(i)):
            if not info["is_weight"]:
                assert net.slot(i, j, 0) is None


@pytest.mark.parametrize("kw", [{}, dict(beta_1=0.5, beta_2=0.9, epsilon=1e-3)],
                         ids=["keras-defaults", "custom"])
def test_adam_matches_keras_formula(kw):
    lr, steps, start = 0.01, 4, 0
    net, x, rng = _small_net(1)
    net.set_optimizer("adam", learning_rate=lr, **kw)
    if kw:
        start = 7                      # resumed training: t continues from iterations
        net.iterations = start
    b1, b2 = _f32(kw.get("beta_1", 0.9)), _f32(kw.get("beta_2", 0.999))
    eps = _f32(kw.get("epsilon", 1e-7))
    w = {k: v.astype(np.float64) for k, v in _weights(net).items()}
    m = {k: np.zeros_like(v) for k, v in w.items()}
    v = {k: np.zeros_like(a) for k, a in w.items()}
    for step in range(1, steps + 1):
        g = _backward_once(net, x, rng)
        net.apply_gradients()
        t = start + step
        assert net.iterations == t
        alpha = _f32(lr) * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        for k in w:
            m[k] = b1 * m[k] + (1 - b1) * g[k]
            v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
            w[k] = w[k] - alpha * m[k] / (np.sqrt(v[k]) + eps)
            _close(net.get_param(*k), w[k], f"step {step} param {k}")
            _close(net.slot(*k, 0), m[k], f"step {step} m {k}")
            _close(net.slot(*k, 1), v[k], f"step {step} v {k}")
            assert net.slot(*k, 2) is None


def test_optimizer_errors():
    net, x, rng = _small_net()
    with pytest.raises(RuntimeError, match="optimizer"):
        net.apply_gradients()
    with pytest.raises(ValueError, match="unknown optimizer"):
        net.set_optimizer("adadelta")
    with pytest.raises(ValueError, match="learning_rate"):
        net.set_optimizer("sgd", learning_rate=-1.0)
    with pytest.raises(ValueError, match="beta"):
        net.set_optimizer("adam", beta_1=1.0)


# ---------------------------------------------------------------- (b) train_step loss


def _head_net(kind, rng, in_shape=(2, 2, 3), classes=5):
    """A net whose output is a softmax: Dense(softmax), or the MobileNet head
    conv 1x1 -> Reshape -> Activation(softmax).  Returns net, W (in, classes), b."""
    net = _core.Net(in_shape)
    feats = int(np.prod(in_shape))
    W = rng.normal(0, 1, (feats, classes)).astype(np.float32)
    b = rng.normal(0, 0.5, classes).astype(np.float32)
    if kind == "dense":
        net.add("dense", units=classes, activation="softmax")
        net.set_param(0, 0, W)
    else:
        net.add("reshape", target_shape=(1, 1, feats))
        net.add("conv2d", filters=classes, kernel_size=1)
        net.add("reshape", target_shape=(1, 1, classes))
        net.add("activation", activation="softmax")
        net.set_param(1, 0, W.reshape(1, 1, feats, classes))
    net.set_param(-1 if kind == "dense" else 1, 1, b)
    return net, W, b


def _layer_of(kind):
    return 0 if kind == "dense" else 1


@pytest.mark.parametrize("kind", ["dense", "conv_reshape_softmax"])
@pytest.mark.parametrize("labels", ["onehot", "soft"])
def test_train_step_cross_entropy_and_fused_gradient(kind, labels):
    rng = np.random.default_rng(3)
    n, classes = 4, 5
    net, W, b = _head_net(kind, rng, classes=classes)
    net.set_optimizer("sgd", learning_rate=0.0)       # lr 0: grads only, weights unchanged
    x = rng.normal(size=(n, 2, 2, 3)).astype(np.float32)
    if labels == "onehot":
        y = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, n)]
    else:
        y = rng.dirichlet(np.ones(classes), n).astype(np.float32)
    loss, p = net.train_step(x, y.reshape(n, 1, 1, classes))
    assert net.iterations == 1
    xf = x.reshape(n, -1).astype(np.float64)
    z = xf @ W.astype(np.float64) + b
    p_ref = ref.act_forward("softmax", z)
    y64 = y.astype(np.float64)
    loss_ref = np.mean(-(y64 * np.log(np.clip(p_ref, 1e-7, 1 - 1e-7))).sum(axis=1))
    # float32 softmax and log over 5 classes: a few ulps; 1e-6 is ~10 ulps of the loss
    assert abs(loss - loss_ref) <= 1e-6 * max(1, loss_ref)
    np.testing.assert_allclose(p.reshape(n, classes), p_ref, rtol=1e-5, atol=1e-7)
    # fused gradient w.r.t. the logits: (p * sum(y) - y) / n
    dz = (p_ref * y64.sum(axis=1, keepdims=True) - y64) / n
    li = _layer_of(kind)
    gW, gb = net.grad(li, 0).reshape(W.shape), net.grad(li, 1)
    # reductions over n = 4 samples of float32 products: 1e-5 relative is ~100 ulps
    np.testing.assert_allclose(gW, xf.T @ dz, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gb, dz.sum(axis=0), rtol=1e-5, atol=1e-6)
    assert np.array_equal(net.get_param(li, 0).reshape(W.shape), W)
    # the unfused path (softmax backward of dL/dp) gives the same gradient
    p32 = net.forward(x, training=True)
    net.backward((-y / (n * p32.reshape(n, classes))).reshape(n, 1, 1, classes))
    np.testing.assert_allclose(net.grad(li, 0).reshape(W.shape), gW, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(net.grad(li, 1), gb, rtol=1e-4, atol=1e-6)


def test_train_step_loss_from_logits_and_updates_weights():
    rng = np.random.default_rng(4)
    n, classes, lr = 2, 5, 0.1
    net, W, b = _head_net("dense", rng, classes=classes)
    # logits spread by ~100: p(true) underflows below 1e-7 for sample 0 (true class 0, the
    # smallest logit) and is 1 - tiny for sample 1 (true class 4, the largest)
    W[:] = 0
    b = np.array([-60, -30, 0, 30, 60], np.float32)
    net.set_param(0, 0, W)
    net.set_param(0, 1, b)
    net.set_optimizer("sgd", learning_rate=lr)
    y = np.eye(classes, dtype=np.float32)[[0, 4]]
    x = rng.normal(size=(n, 2, 2, 3)).astype(np.float32)
    loss, p = net.train_step(x, y)
    p = p.reshape(n, classes)
    assert p[0, 0] < 1e-7 and p[1, 4] > 1 - 1e-7
    # Keras computes the loss of a softmax output from its logits, unclipped:
    # -log_softmax(b)[true], batch mean (sample 0: 120 + log(1 + e^-30 + ...))
    lse = np.logaddexp.reduce(b.astype(np.float64))
    want = ((lse - b[0]) + (lse - b[4])) / 2
    assert abs(loss - want) <= 1e-6 * want
    # SGD step with the unclipped fused gradient (p - y) / n
    dz = (p.astype(np.float64) - y) / n
    np.testing.assert_allclose(net.get_param(0, 1), b - lr * dz.sum(axis=0), rtol=1e-6,
                               atol=1e-6)


def test_train_step_errors():
    rng = np.random.default_rng(5)
    net, W, b = _head_net("dense", rng)
    x = np.zeros((2, 2, 2, 3), np.float32)
    y = np.eye(5, dtype=np.float32)[[0, 1]]
    with pytest.raises(RuntimeError, match="optimizer"):
        net.train_step(x, y)
    net.set_optimizer("adam")
    with pytest.raises(ValueError, match="batch sizes differ"):
        net.train_step(x, y[:1])
    with pytest.raises(ValueError, match="y must have shape"):
        net.train_step(x, np.zeros((2, 4), np.float32))
    plain = _core.Net((2, 2, 3))
    plain.add("dense", units=5)
    plain.set_optimizer("sgd")
    with pytest.raises(RuntimeError, match="softmax"):
        plain.train_step(x, y)


# ---------------------------------------------------------------- (c) frozen layers

FROZEN = [("conv2d", dict(filters=6, kernel_size=3, padding="same", use_bias=False)),  # 0 F
          ("batch_normalization", {}),                                               # 1 F
          ("activation", dict(activation="relu6")),                                  # 2
          ("depthwise_conv2d", dict(kernel_size=3, padding="same")),                 # 3 T
          ("batch_normalization", {}),                                               # 4 T
          ("activation", dict(activation="relu6")),                                  # 5
          ("global_average_pooling2d", {}),                                          # 6
          ("dense", dict(units=4, activation="softmax"))]                            # 7 T


def test_frozen_layers_are_untouched_and_skipped():
    rng = np.random.default_rng(6)
    shape, n, steps = (6, 6, 3), 3, 3
    net = _core.Net(shape)
    for kind, cfg in FROZEN:
        net.add(kind, **cfg)
    params = {}
    for i in range(net.num_layers):
        for j, info in enumerate(net.params(i)):
            name = info["name"]
            v = (rng.uniform(0.5, 1.5, info["shape"]) if name in ("gamma", "moving_variance")
                 else rng.normal(0, 0.7, info["shape"]))
            params[i, j] = v.astype(np.float32)
            net.set_param(i, j, params[i, j])
    net.set_trainable(0, False)
    net.set_trainable(1, False)
    net.set_optimizer("adam", learning_rate=0.01)
    x = rng.uniform(-1, 1, (n, *shape)).astype(np.float32)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, n)]

    # the first step's prediction: the twin with the frozen BN in INFERENCE mode and the
    # trainable one in training mode (relu6 kinks are irrelevant for the forward)
    h = x.astype(np.float64)
    for i, (kind, cfg) in enumerate(FROZEN):
        ps = [params[i, j] for j in range(len(net.params(i)))]
        h, _ = ref.forward(kind, h, ps, cfg, training=(i != 1))
    _, p = net.train_step(x, y)
    # float32 through 8 layers, the largest reduction K = 54 (3x3x6 conv) and batch-norm
    # statistics over 108 values: 1e-4 relative is well above ~K eps32 ~ 1e-5
    np.testing.assert_allclose(p, h, rtol=1e-4, atol=1e-6)
    for _ in range(steps - 1):
        net.train_step(x, y)

    assert net.iterations == steps
    for (i, j), v in params.items():
        now = net.get_param(i, j)
        if i in (0, 1):
            assert np.array_equal(now, v), f"frozen layer {i} param {j} changed"
            assert net.grad(i, j) is None
            for k in (0, 1):
                assert net.slot(i, j, k) is None, f"frozen layer {i} param {j} has slot {k}"
        else:
            assert not np.array_equal(now, v), f"trainable layer {i} param {j} did not change"
            info = net.params(i)[j]
            if info["is_weight"]:
                assert net.slot(i, j, 0) is not None and net.slot(i, j, 1) is not None
            else:
                assert net.slot(i, j, 0) is None       # moving statistics: no slots
    for i in range(net.num_layers):
        fwd, bwd = net.layer_calls(i)
        assert fwd == steps
        # backward stops at the earliest trainable layer (3): none below it
        assert bwd == (0 if i < 3 else steps), f"layer {i}: {bwd} backward calls"


def test_need_dx_runs_frozen_layers_without_grads():
    rng = np.random.default_rng(7)
    net = _core.Net((4, 4, 2))
    net.add("conv2d", filters=3, kernel_size=3, padding="same")
    net.add("dense", units=2)
    net.set_trainable(0, False)
    w = rng.normal(size=(3, 3, 2, 3)).astype(np.float32)
    net.set_param(0, 0, w)
    x = rng.normal(size=(2, 4, 4, 2)).astype(np.float32)
    y = net.forward(x, training=True)
    net.backward(np.ones_like(y))
    assert net.layer_calls(0) == (1, 0)
    dx = net.backward(np.ones_like(y), need_dx=True)
    assert net.layer_calls(0) == (1, 1) and dx.shape == x.shape
    assert net.grad(0, 0) is None and np.array_equal(net.get_param(0, 0), w)


def test_everything_frozen_gives_the_loss_and_changes_nothing():
    """A network with no trainable layer (a user froze them all): train_step returns the
    loss and updates nothing; backward without need_dx does nothing (it used to write
    through the gradient buffers that no layer had)."""
    rng = np.random.default_rng(8)
    net = _core.Net((4, 4, 2))
    net.add("conv2d", filters=3, kernel_size=3, padding="same")
    net.add("global_average_pooling2d")
    net.add("dense", units=3, activation="softmax")
    net.set_optimizer("adam", learning_rate=0.1)
    for i in range(net.num_layers):
        net.set_trainable(i, False)
    before = [net.get_param(i, j) for i in (0, 2) for j in range(2)]
    x = rng.normal(size=(2, 4, 4, 2)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[[0, 2]].reshape(2, 1, 1, 3)
    loss, p = net.train_step(x, y)
    p = p.reshape(2, 3)
    np.testing.assert_allclose(loss, -np.mean(np.log(p[[0, 1], [0, 2]])), rtol=1e-5)
    net.forward(x, training=True)
    net.backward(np.ones((2, 1, 1, 3), np.float32))
    for a, b in zip(before, [net.get_param(i, j) for i in (0, 2) for j in range(2)]):
        np.testing.assert_array_equal(a, b)
    assert all(net.layer_calls(i)[1] == 0 for i in range(net.num_layers))


class TestMisuseRaisesInsteadOfCrashing:
    """Calls that used to read or write out of bounds (or compute garbage) in C; each
    must be a Python exception now.  Found by a crash hunt over the Net API."""

    @staticmethod
    def _classifier():
        net = _core.Net((8, 8, 3))
        net.add("conv2d", filters=4, kernel_size=3, padding="same")
        net.add("global_average_pooling2d")
        net.add("dense", units=3, activation="softmax")
        return net

    def test_backward_with_another_batch_size_than_the_forward(self):
        net = self._classifier()
        net.forward(np.ones((4, 8, 8, 3), np.float32), training=True)
        for n in (1, 6):
            with pytest.raises(ValueError, match=f"dy has {n} samples, the last forward had 4"):
                net.backward(np.ones((n, 3), np.float32), need_dx=True)
        assert net.backward(np.ones((4, 3), np.float32), need_dx=True).shape == (4, 8, 8, 3)

    def test_train_step_starting_past_the_softmax_layer(self):
        net = _core.Net((1, 1, 4))
        net.add("dense", units=3, activation="softmax")
        net.add("reshape", target_shape=(1, 1, 3))
        net.set_trainable(0, False)
        net.set_optimizer("sgd")
        with pytest.raises(ValueError, match="past the softmax output"):
            net.train_step(np.ones((2, 3), np.float32), np.eye(3, dtype=np.float32)[[0, 1]],
                           start=1)

    def test_argument_conversion_cannot_change_the_network(self):
        net = self._classifier()
        net.set_optimizer("sgd")

        class Sneaky:
            def __array__(self, dtype=None, copy=None):
                net.add("dense", units=5000, activation="softmax")
                return np.ones((4, 8, 8, 3), np.float32)
        with pytest.raises(RuntimeError, match="already running"):
            net.train_step(Sneaky(), np.eye(3, dtype=np.float32)[[0, 1, 2, 0]])
        with pytest.raises(RuntimeError, match="already running"):
            net.forward(Sneaky())
        assert net.num_layers == 3
        net.forward(np.ones((1, 8, 8, 3), np.float32))          # and it is usable after

    def test_a_bound_array_resized_behind_the_network_s_back(self):
        net = _core.Net((1, 1, 64))
        net.add("dense", units=64)
        a = np.ones((64, 64), np.float32)
        net.bind_param(0, 0, a)
        a.resize((1,), refcheck=False)
        for call in (lambda: net.forward(np.ones((1, 64), np.float32)),
                     lambda: net.get_param(0, 0)):
            with pytest.raises(RuntimeError, match="resized or moved after bind_param"):
                call()
        net.bind_param(0, 0, np.ones((64, 64), np.float32))
        assert net.forward(np.ones((1, 64), np.float32)).shape == (1, 1, 1, 64)

    def test_bind_param_refuses_foreign_byte_order(self):
        net = _core.Net((1, 1, 1))
        net.add("dense", units=2)
        with pytest.raises(ValueError, match="native byte order"):
            net.bind_param(0, 0, np.array([[1.0, 2.0]], dtype=">f4"))

    def test_nan_made_inside_the_network_reaches_the_output_of_a_fused_group(self):
        """A NaN weight in an unfused layer upstream: the fused conv+BN+ReLU would clip the
        NaN to 0 (oneDNN's relu); it must propagate, as unfused (and TF)."""
        outs = []
        for fuse in (True, False):
            net = _core.Net((4, 4, 1))
            net.add("dense", units=16)
            net.add("reshape", target_shape=(4, 4, 1))
            net.add("conv2d", filters=1, kernel_size=1)
            if not fuse:
                net.add("reshape", target_shape=(4, 4, 1))      # breaks the group
            net.add("batch_normalization")
            net.add("activation", activation="relu")
            w = np.zeros((16, 16), np.float32)
            w[0, 0] = np.nan
            net.set_param(0, 0, w)
            net.set_param(2, 0, np.ones((1, 1, 1, 1), np.float32))
            outs.append(net.forward(np.ones((1, 4, 4, 1), np.float32)).ravel())
        assert np.isnan(outs[0][0]) and np.isnan(outs[1][0])
        np.testing.assert_array_equal(outs[0][1:], outs[1][1:])

    @pytest.mark.parametrize("kw", [dict(kernel_size=2**32 + 3), dict(kernel_size=(3, 2**40)),
                                    dict(strides=2**64), dict(filters=2, kernel_size=2**64)])
    def test_integer_options_out_of_range(self, kw):
        net = _core.Net((8, 8, 3))
        kw.setdefault("filters", 2)
        with pytest.raises(ValueError, match="out of range"):
            net.add("conv2d", **kw)
        with pytest.raises(ValueError, match="out of range"):
            net.add("zero_padding2d", padding=2**32)
        with pytest.raises(ValueError, match="out of range"):
            net.add("reshape", target_shape=(2**32 + 1, 1, 192))

    def test_an_empty_batch_says_so(self):
        net = self._classifier()
        with pytest.raises(ValueError, match="batch size must be in \\[1"):
            net.forward(np.zeros((0, 8, 8, 3), np.float32))

    # -- found by an ASan/UBSan fuzz of the Net API (session 5) -------------------------
    def test_set_slot_conversion_cannot_free_the_slot(self):
        net = _core.Net((1, 1, 4))
        net.add("dense", units=3, activation="softmax")
        net.set_optimizer("adam")
        net.train_step(np.ones((2, 4), np.float32), np.eye(3, dtype=np.float32)[:2])

        class Resets:
            def __array__(self, dtype=None, copy=None):
                net.reset_optimizer()                   # would free the slot mid-call
                return np.ones((4, 3), np.float32)
        with pytest.raises(RuntimeError, match="already running"):
            net.set_slot(0, 0, 0, Resets())
        net.set_slot(0, 0, 0, np.full((4, 3), 2.0, np.float32))
        np.testing.assert_array_equal(net.slot(0, 0, 0), np.full((4, 3), 2.0))

    def test_a_bound_array_resized_while_arguments_convert(self):
        net = _core.Net((1, 1, 64))
        net.add("dense", units=64)
        a = np.ones((64, 64), np.float32)
        net.bind_param(0, 0, a)
        x = np.ones((1, 64), np.float32)

        class Resizes:
            def __array__(self, dtype=None, copy=None):
                a.resize((1,), refcheck=False)
                return x
        with pytest.raises(RuntimeError, match="resized or moved"):
            net.forward(Resizes())

    def test_a_bound_view_whose_base_is_resized(self):
        net = _core.Net((1, 1, 64))
        net.add("dense", units=64)
        base = np.ones(64 * 64 + 10, np.float32)
        net.bind_param(0, 0, base[:64 * 64].reshape(64, 64))
        assert net.forward(np.ones((1, 64), np.float32)).shape == (1, 1, 1, 64)
        base.resize((10 ** 6,), refcheck=False)
        with pytest.raises(RuntimeError, match="resized or moved"):
            net.forward(np.ones((1, 64), np.float32))

    def test_a_per_sample_size_beyond_int_is_refused_at_add(self):
        net = _core.Net((1, 1, 4))
        with pytest.raises(ValueError, match="too large"):
            net.add("zero_padding2d", padding=((0, 631832657), (0, 1824726040)))
        assert net.num_layers == 0

    def test_overflowing_shape_arithmetic(self):
        net = _core.Net((2 ** 31 - 1, 1, 1))
        net.add("conv2d", filters=1, strides=2 ** 30, padding="same")
        assert net.output_shape(0) == (2, 1, 1)
        with pytest.raises(ValueError, match="too large"):
            _core.Net((4, 4, 4)).add("reshape", target_shape=(2 ** 30, 2 ** 30, 2 ** 30))

    def test_thread_counts_and_iterations_are_bounded(self):
        net = self._classifier()
        with pytest.raises(ValueError, match="num_threads"):
            net.set_num_threads(100000)
        with pytest.raises(ValueError, match="iterations"):
            net.iterations = 2 ** 63 - 1
        net.set_optimizer("adam", epsilon=1e-7)
        with pytest.raises(ValueError, match="finite epsilon"):
            net.set_optimizer("adam", epsilon=float("inf"))

    def test_set_param_from_an_overlapping_view(self):
        net = _core.Net((1, 1, 4))
        net.add("dense", units=3, use_bias=False)
        big = np.arange(24, dtype=np.float32)
        net.bind_param(0, 0, big[:12].reshape(4, 3))
        net.set_param(0, 0, big[1:13].reshape(4, 3))
        np.testing.assert_array_equal(net.get_param(0, 0).ravel(), np.arange(1, 13))

    def test_activation_only_on_layers_that_apply_it(self):
        net = _core.Net((1, 1, 3))
        net.add("dense", units=3)
        for kind, cfg in (("dropout", {"rate": 0.0}), ("global_average_pooling2d", {}),
                          ("batch_normalization", {}), ("zero_padding2d", {"padding": 1})):
            with pytest.raises(ValueError, match="takes no activation"):
                net.add(kind, activation="softmax", **cfg)

    def test_strings_with_nul_characters_are_refused(self):
        net = _core.Net((4, 4, 1))
        with pytest.raises(ValueError, match="NUL"):
            net.add("conv2d", filters=1, activation="relu\0x")
        with pytest.raises(ValueError, match="NUL"):
            net.add("conv2d", filters=1, padding="same\0junk")
        assert net.num_layers == 0

    def test_negative_stop_other_than_minus_one(self):
        net = self._classifier()
        with pytest.raises(IndexError, match="stop"):
            net.forward(np.ones((1, 8, 8, 3), np.float32), stop=-5)

    def test_dx_through_a_frozen_fused_group_below_the_trainable_layers(self):
        """conv -> frozen BN (fused in a training forward, its output kept for the dense
        above): backward with need_dx must use the BN's inference mode, not state left by
        an earlier training-mode forward, nor fail for the lack of one."""
        def make():
            net = _core.Net((4, 4, 2))
            net.add("conv2d", filters=3, kernel_size=3)
            net.add("batch_normalization")
            net.add("dense", units=2)
            rng = np.random.default_rng(0)
            for i in range(3):
                for j, p in enumerate(net.params(i)):
                    if p["is_weight"]:
                        net.set_param(i, j, rng.standard_normal(p["shape"]).astype(np.float32))
            net.set_param(1, 3, np.full(3, 2.0, np.float32))
            return net
        rng = np.random.default_rng(1)
        x = rng.standard_normal((2, 4, 4, 2)).astype(np.float32)
        dy = rng.standard_normal((2, 2)).astype(np.float32)
        ref = make()
        for i in (0, 1):
            ref.set_trainable(i, False)
        ref.forward(x, training=False)                  # unfused, BN in inference mode
        want = ref.backward(dy, need_dx=True)
        fresh = make()
        stale = make()
        stale.forward(x[::-1].copy(), training=True)     # BN statistics of another batch
        for net in (fresh, stale):
            for i in (0, 1):
                net.set_trainable(i, False)
            net.set_param(1, 2, np.zeros(3, np.float32))
            net.set_param(1, 3, np.full(3, 2.0, np.float32))
            net.forward(x, training=True)
            np.testing.assert_allclose(net.backward(dy, need_dx=True), want, rtol=1e-5,
                                       atol=1e-5 * np.abs(want).max())


# ---------------------------------------------------------------- (d) MobileNet vs torch

ALPHA, SIZE, BATCH, CLASSES = 0.25, 64, 4, 10
MOMENTUM, BN_EPS = 0.99, 1e-3
MOBILENET_RTOL = 1e-3
SEED = 11


def build_mobilenet(weights, alpha=ALPHA, size=SIZE, classes=CLASSES):
    """The Keras MobileNet v1 layer sequence with ``Net.add``; returns (net, {Keras layer
    name: layer index})."""
    from tests.reference.torch_mobilenet import BLOCK_STRIDES, POINTWISE_FILTERS
    net = _core.Net((size, size, 3))
    index = {}

    def add(name, kind, **cfg):
        index[name] = net.add(kind, **cfg)

    c = int(32 * alpha)
    add("conv1_pad", "zero_padding2d", padding=((0, 1), (0, 1)))
    add("conv1", "conv2d", filters=c, kernel_size=3, strides=2, padding="valid",
        use_bias=False)
    add("conv1_bn", "batch_normalization", momentum=MOMENTUM, epsilon=BN_EPS)
    add("conv1_relu", "activation", activation="relu6")
    for k, (s, f) in enumerate(zip(BLOCK_STRIDES, POINTWISE_FILTERS), start=1):
        if s == 2:
            add(f"conv_pad_{k}", "zero_padding2d", padding=((0, 1), (0, 1)))
        add(f"conv_dw_{k}", "depthwise_conv2d", kernel_size=3, strides=s,
            padding="valid" if s == 2 else "same", use_bias=False)
        add(f"conv_dw_{k}_bn", "batch_normalization", momentum=MOMENTUM, epsilon=BN_EPS)
        add(f"conv_dw_{k}_relu", "activation", activation="relu6")
        add(f"conv_pw_{k}", "conv2d", filters=int(f * alpha), kernel_size=1, padding="same",
            use_bias=False)
        add(f"conv_pw_{k}_bn", "batch_normalization", momentum=MOMENTUM, epsilon=BN_EPS)
        add(f"conv_pw_{k}_relu", "activation", activation="relu6")
    c = int(1024 * alpha)
    add("global_average_pooling2d", "global_average_pooling2d")
    add("reshape_1", "reshape", target_shape=(1, 1, c))
    add("dropout", "dropout", rate=0.0)
    add("conv_preds", "conv2d", filters=classes, kernel_size=1, padding="same")
    add("reshape_2", "reshape", target_shape=(1, 1, classes))
    add("predictions", "activation", activation="softmax")
    for name, arrays in weights.items():
        for j, a in enumerate(arrays):
            net.set_param(index[name], j, a)
    return net, index


def _kink_margin(m):
    """ReLU6 inputs are kept this far from 0 and 6 (m = n*h*w values per channel).  The
    float32 vs float64 discrepancy of MobileNet's pre-activations grows with depth: measured
    (torch float32 vs float64) <= 2e-5 in the layers with m >= 256 (up to block 5 here) and
    <= 1e-3 in the deep layers (m = 64 and 16).  Without a margin, one float32 value on the
    other side of a kink flips a ReLU6 mask and, at m = 64, moves every gradient below it by
    ~1e-2 (seen with random weights), which is float32 conditioning, not a C error."""
    return 1e-4 if m >= 256 else 3e-3


def _rel(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return np.abs(got - want).max() / np.abs(want).max()


@pytest.mark.slow
def test_mobilenet_training_gradients_match_torch():
    """Training-mode MobileNet v1: the gradient of the Keras cross-entropy w.r.t. EVERY
    parameter, from ``train_step`` with SGD lr=0 (the real training path: fused softmax +
    cross-entropy; lr 0 leaves the weights unchanged so ``net.grad`` reads the gradients of
    exactly these weights), vs PyTorch float64 with the same weights.  Then the same through
    forward(training=True) + backward(dL/dp) (the unfused softmax backward).

    Tolerance 1e-3 (max abs diff / max abs value per parameter): float32 through 27
    convolutions and 27 batch norms (reductions up to n*h*w = 4096 values, errors
    compounding with depth; a PyTorch float32 run of the same model shows the same ~1e-4).
    ReLU6 kinks are kept out of float32's reach by construction (``_kink_margin``) while
    about half of all ReLU6 inputs are clipped at 0 and some at 6.  Measured errors are
    printed (pytest -s)."""
    from tests.reference import torch_mobilenet as tm
    rng = np.random.default_rng(SEED + 1)
    x = rng.uniform(-1, 1, (BATCH, SIZE, SIZE, 3)).astype(np.float32)
    y = np.eye(CLASSES, dtype=np.float32)[rng.integers(0, CLASSES, BATCH)]
    weights = tm.avoid_relu6_kinks(tm.random_weights(ALPHA, CLASSES, seed=SEED), x,
                                   epsilon=_f32(BN_EPS), margin=_kink_margin, seed=SEED)
    want = tm.loss_and_grads(weights, x, y, momentum=_f32(MOMENTUM), epsilon=_f32(BN_EPS))
    assert want["probs"].min() > 1e-7 and want["probs"].max() < 1 - 1e-7   # no clipping

    net, index = build_mobilenet(weights)
    assert net.output_shape(-1) == (1, 1, CLASSES)
    net.set_optimizer("sgd", learning_rate=0.0)
    loss, p = net.train_step(x, y.reshape(BATCH, 1, 1, CLASSES))
    assert abs(loss - want["loss"]) <= 1e-3 * want["loss"], (loss, want["loss"])
    assert _rel(p.reshape(BATCH, CLASSES), want["probs"]) <= MOBILENET_RTOL

    def check_grads(path):
        errors, bad = {}, []
        for name, grads in want["grads"].items():
            for j, g in enumerate(grads):
                if g is None:
                    assert net.grad(index[name], j) is None
                    continue
                got = net.grad(index[name], j)
                assert got is not None, f"{path}: no gradient for {name}[{j}]"
                errors[f"{name}[{j}]"] = e = _rel(got, g)
                if not e <= MOBILENET_RTOL:
                    bad.append(f"{name}[{j}] {e:.3g}")
        worst = max(errors, key=errors.get)
        print(f"\n{path}: {len(errors)} parameter gradients, max rel error "
              f"{errors[worst]:.3g} at {worst}; median {np.median(list(errors.values())):.3g}")
        for k, v in sorted(errors.items(), key=lambda kv: -kv[1])[:8]:
            print(f"    {k:24s} {v:.3g}")
        assert not bad, f"{path}: gradients off by more than {MOBILENET_RTOL}: {bad}"
        return errors

    check_grads("train_step (fused softmax+CE)")
    # weights unchanged (lr 0), moving statistics updated once, as Keras does
    stats = {}
    for name, arrays in weights.items():
        i = index[name]
        if name.endswith("_bn"):
            assert np.array_equal(net.get_param(i, 0), arrays[0])
            mm, mv = want["moving"][name]
            stats[name] = max(_rel(net.get_param(i, 2), mm), _rel(net.get_param(i, 3), mv))
        else:
            for j, a in enumerate(arrays):
                assert np.array_equal(net.get_param(i, j), a), f"{name}[{j}] changed at lr 0"
    worst = max(stats, key=stats.get)
    print(f"moving statistics: max rel error {stats[worst]:.3g} at {worst}")
    # moving = m * moving + (1 - m) * batch_stat: the batch statistics' float32 error (at
    # most ~1e-3, as the gradients) enters scaled by 1 - m = 0.01, so 1e-5; an unbiased
    # variance (x n/(n-1), 6.7% at the last layers' n*h*w = 16) would be off by ~7e-4
    assert stats[worst] <= 1e-5

    # unfused: forward(training) + backward(dL/dp) through the softmax layer's backward
    probs = net.forward(x, training=True).reshape(BATCH, CLASSES)
    net.backward((-y / (BATCH * probs)).reshape(BATCH, 1, 1, CLASSES))
    check_grads("forward + backward (softmax backward)")


# ---------------------------------------------------------------- backward's saved input


def _conv_first_net(rng):
    net = _core.Net((6, 6, 3))
    net.add("conv2d", filters=4, kernel_size=3, padding="same")
    net.set_param(0, 0, rng.normal(size=(3, 3, 3, 4)).astype(np.float32))
    return net


def test_backward_after_converted_input_uses_the_forward_input():
    """forward() accepts any numeric array (float64 here is converted to a float32 temporary);
    the following backward must compute the kernel gradient from THAT input.  Small arrays
    only: reading a freed buffer must not be allowed to crash the test run."""
    rng = np.random.default_rng(8)
    x = rng.normal(size=(2, 6, 6, 3))
    dy = rng.normal(size=(2, 6, 6, 4)).astype(np.float32)
    a = _conv_first_net(np.random.default_rng(9))
    a.forward(x.astype(np.float32), training=True)
    a.backward(dy)
    b = _conv_first_net(np.random.default_rng(9))
    b.forward(x, training=True)                        # float64: converted by the binding
    junk = [np.full(x.shape, 7.0, np.float32) for _ in range(20)]   # reuse freed memory
    b.backward(dy)
    del junk
    np.testing.assert_allclose(b.grad(0, 0), a.grad(0, 0), rtol=1e-6, atol=1e-6)


def test_backward_is_independent_of_later_changes_to_the_input_array():
    """Keras/TF differentiate at the forward's input; overwriting the caller's array between
    forward and backward must not change the gradients."""
    rng = np.random.default_rng(10)
    x = rng.normal(size=(2, 6, 6, 3)).astype(np.float32)
    dy = rng.normal(size=(2, 6, 6, 4)).astype(np.float32)
    a = _conv_first_net(np.random.default_rng(9))
    a.forward(x, training=True)
    a.backward(dy)
    want = a.grad(0, 0)
    b = _conv_first_net(np.random.default_rng(9))
    x2 = x.copy()
    b.forward(x2, training=True)
    x2[:] = 0
    b.backward(dy)
    np.testing.assert_allclose(b.grad(0, 0), want, rtol=1e-6, atol=1e-6)


def test_buffers_only_for_outputs_that_backward_reads():
    """Memory: an inference forward keeps no layer's output (two transient buffers serve
    the whole chain); a training step with a frozen trunk keeps outputs and gradients only
    from the trunk's last output up; results equal those of a net that keeps everything
    (an inference forward before need_dx recomputes what it did not keep)."""
    def random_net():
        net, index = build_mobilenet({})
        rng = np.random.default_rng(4)
        for i in range(net.num_layers):
            for j, info in enumerate(net.params(i)):
                net.set_param(i, j, random_param(rng, info["name"], info["shape"]))
        return net, index
    net, index = random_net()
    n = 8
    x = np.random.default_rng(2).uniform(-1, 1, (n, SIZE, SIZE, 3)).astype(np.float32)
    floats = [int(np.prod(net.output_shape(i))) * n for i in range(net.num_layers)]
    biggest, everything = max(floats), sum(floats)
    y_inf = net.forward(x)
    inputs = x.size
    assert net.buffer_bytes() <= 4 * (2 * biggest + inputs + 64)
    assert net.buffer_bytes() < 4 * everything / 5

    # tutorial-like freeze: below conv_pw_12_bn nothing is trainable
    first = index["conv_pw_12_bn"]
    for i in range(first):
        net.set_trainable(i, False)
    net.set_optimizer("sgd", learning_rate=0.0)
    labels = np.eye(CLASSES, dtype=np.float32)[np.arange(n) % CLASSES].reshape(n, 1, 1, -1)
    net.train_step(x, labels)
    tail = sum(floats[first - 1:])
    kept = net.buffer_bytes() - 4 * (2 * biggest + inputs)
    assert 0 < kept <= 4 * (2 * tail + 64 * (net.num_layers - first + 1))

    # need_dx after an inference forward: the outputs are recomputed into kept buffers;
    # the same as a net that never ran with a different buffer history
    dy = np.random.default_rng(3).normal(size=y_inf.shape).astype(np.float32)
    y = net.forward(x)
    dx = net.backward(dy, need_dx=True)
    assert np.abs(dx).max() > 0
    fresh, _ = random_net()
    for i in range(first):
        fresh.set_trainable(i, False)
    fresh.set_optimizer("sgd", learning_rate=0.0)
    fresh.train_step(x, labels)    # moves the trainable batch norms' statistics alike
    np.testing.assert_array_equal(fresh.forward(x), y)
    np.testing.assert_array_equal(dx, fresh.backward(dy, need_dx=True))
