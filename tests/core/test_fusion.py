"""Fused inference of [ZeroPadding2D ->] Conv2D/DepthwiseConv2D -> BatchNormalization
(inference mode) [-> ReLU/ReLU6] as one oneDNN convolution (csrc/fusion.c, decided in
csrc/network.c).

The unfused reference is a TWIN network: the same layers and parameters with an
``activation("linear")`` layer after every convolution.  A linear activation is an exact
copy (forward and backward), so the twin computes bit for bit what the network computes
unfused, while the extra layer breaks the conv -> batch-norm pattern and nothing in the
twin fuses.

Tolerances.  Folding changes the rounding, nothing else: the folded weights w * s and the
bias (b - mean) * s + beta are rounded once each, then the convolution adds them up in
its own order; the unfused path rounds the convolution, then the batch norm's
(x - mean) * scale + beta.  Both are float32 evaluations of the same function, each
within ~K * eps32 (K = reduction depth, at most 27 here; eps32 = 2^-24) of it relative to
the magnitudes summed, compounding over three convolutions, the pooling (K = 16) and the
dense layer (K = 12).  1e-4 relative to the largest output (the metric of
tests/core/test_layers.py) is above that bound and far below any indexing, padding or
folding error (order 1).  Measured differences are ~1e-7.

Semantics checked here:
* an inference forward (training=False), and a training forward below the first trainable
  layer (frozen trunk), run the groups fused; a group's intermediate outputs are then not
  computed;
* a backward that needs them (need_dx=True, or trainable layers inside a fused group)
  first recomputes them: after an inference forward the whole forward is redone unfused
  (so the gradients are bit-identical to the unfused network's); after a training forward
  only the fused groups (frozen, stateless) are, so batch-norm statistics are not updated
  twice and dropout keeps its mask;
* ``layer_calls``: a fused group counts one forward call for each of its layers; the
  recomputation before a backward counts again (it is real work).
"""

from __future__ import annotations


import numpy as np
import pytest

from tests.reference import numpy_ops as ref
from tests.reference.params import random_param

_core = pytest.importorskip("aslnet._core")

RTOL = 1e-4
SHAPE = (9, 9, 3)   # padded to 10 x 10: the 3x3/2 'valid' conv drops the last row/column
CLASSES = 5
CHAIN = [
    ("zero_padding2d", dict(padding=((0, 1), (0, 1)))),                            # 0
    ("conv2d", dict(filters=8, kernel_size=3, strides=2, padding="valid",
                    use_bias=False)),                                               # 1
    ("batch_normalization", {}),                                                    # 2
    ("activation", dict(activation="relu6")),                                       # 3
    ("depthwise_conv2d", dict(kernel_size=3, padding="same", depth_multiplier=2,
                              use_bias=False)),                                     # 4
    ("batch_normalization", {}),                                                    # 5
    ("activation", dict(activation="relu6")),                                       # 6
    ("conv2d", dict(filters=12, kernel_size=1, padding="same", use_bias=True)),     # 7
    ("batch_normalization", {}),                                                    # 8
    ("activation", dict(activation="relu")),                                        # 9
    ("global_average_pooling2d", {}),                                               # 10
    ("dropout", dict(rate=0.3, seed=5)),                                            # 11
    ("dense", dict(units=CLASSES, activation="softmax")),                           # 12
]
TRUNK = 7   # the tutorial-like freeze: layers below 7 frozen, the rest trainable


def _twin_index(i):
    """Index in the twin of layer i of CHAIN (a linear activation after each conv)."""
    return i + sum(1 for k, _ in CHAIN[:i] if k in ("conv2d", "depthwise_conv2d"))


def _params(rng, pw_bias):
    out = {}
    net = _build({}, pw_bias=pw_bias)   # for the parameter shapes
    for i in range(len(CHAIN)):
        for j, info in enumerate(net.params(i)):
            out[i, j] = random_param(rng, info["name"], info["shape"], w_scale=1.5,
                                     var_low=0.3)
    return out


def _build(params, twin=False, pw_bias=True):
    net = _core.Net(SHAPE)
    for i, (kind, cfg) in enumerate(CHAIN):
        net.add(kind, **(cfg if pw_bias or i != 7 else dict(cfg, use_bias=False)))
        if twin and kind in ("conv2d", "depthwise_conv2d"):
            net.add("activation", activation="linear")
    for (i, j), v in params.items():
        net.set_param(_twin_index(i) if twin else i, j, v)
    return net


def _pair(seed=0, pw_bias=True):
    """(net, twin, params, x).  pw_bias=False drops the bias of the pointwise conv (as
    MobileNet): the training tests need that, since a training batch norm follows it and
    cancels it, so its true gradient is 0 and both runs' gradients are rounding noise
    (which Adam would turn into different +-lr steps)."""
    rng = np.random.default_rng(seed)
    params = _params(rng, pw_bias)
    x = rng.uniform(-1, 1, (4, *SHAPE)).astype(np.float32)
    return (_build(params, pw_bias=pw_bias), _build(params, twin=True, pw_bias=pw_bias),
            params, x)


def _rel(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return np.abs(got - want).max() / np.abs(want).max()


def _reference(params, x, stop):
    h = x.astype(np.float64)
    for i, (kind, cfg) in enumerate(CHAIN[:stop]):
        ps = [params[i, j] for j in range(4) if (i, j) in params]
        h, _ = ref.forward(kind, h, ps, cfg, training=False)
    return h


def _freeze(net, upto, twin=False):
    for i in range(upto):
        net.set_trainable(_twin_index(i) if twin else i, False)


# ------------------------------------------------------------------------ forward


@pytest.mark.parametrize("stop", [3, 4, 6, 7, 9, 10, len(CHAIN)])
def test_fused_forward_matches_unfused_and_reference(stop):
    """Every prefix that ends in or after a group: padding absorbed (3x3/2 'valid' that
    drops a row), groups ending at the batch norm (stop 3) or at relu6/relu, depthwise
    with multiplier 2 (channel i * 2 + m), a pointwise conv with a bias."""
    net, twin, params, x = _pair()
    y = net.forward(x, training=False, stop=stop)
    y_twin = twin.forward(x, training=False, stop=_twin_index(stop - 1) + 1)
    assert _rel(y, y_twin) <= RTOL
    assert _rel(y, _reference(params, x, stop)) <= RTOL
    # the fused path ran: folding changes the rounding of (nearly) every output
    assert not np.array_equal(y, y_twin)


@pytest.mark.parametrize("shape, pad, kind, cfg", [
    ((8, 7, 4), None, "conv2d", dict(filters=6, kernel_size=3, strides=2, padding="same")),
    ((7, 8, 4), None, "depthwise_conv2d", dict(kernel_size=3, strides=2, padding="same")),
    ((9, 6, 3), None, "conv2d", dict(filters=5, kernel_size=(3, 2), strides=(2, 1),
                                     padding="valid")),
    ((6, 7, 3), ((1, 2), (0, 3)), "conv2d", dict(filters=4, kernel_size=3, padding="same")),
    ((6, 7, 3), ((2, 0), (1, 1)), "depthwise_conv2d", dict(kernel_size=5, strides=2,
                                                            depth_multiplier=3)),
    ((5, 5, 2), ((0, 1), (0, 1)), "depthwise_conv2d", dict(kernel_size=3, strides=2)),
])
@pytest.mark.parametrize("act", ["relu", "relu6", None])
def test_group_geometries(shape, pad, kind, cfg, act):
    """One group: TF 'same' with asymmetric (bottom/right) padding, strides, rectangular
    kernels, 'valid' dropping rows, explicit asymmetric padding absorbed on top of the
    conv's own, depthwise multipliers, biases; ending at the batch norm or an
    activation."""
    layers = ([("zero_padding2d", dict(padding=pad))] if pad else []) + [
        (kind, dict(cfg, use_bias=True)), ("batch_normalization", {})] + (
        [("activation", dict(activation=act))] if act else [])
    rng = np.random.default_rng(14)
    nets = [_core.Net(shape), _core.Net(shape)]
    for twin, net in enumerate(nets):
        for k, c in layers:
            net.add(k, **c)
            if twin and k == kind:
                net.add("activation", activation="linear")
    conv = 1 if pad else 0
    for j, info in enumerate(nets[0].params(conv)):
        v = rng.normal(0, 0.5, info["shape"]).astype(np.float32)
        nets[0].set_param(conv, j, v)
        nets[1].set_param(conv, j, v)
    for j, info in enumerate(nets[0].params(conv + 1)):
        v = rng.uniform(0.5, 2.0, info["shape"]) if j in (0, 3) else rng.normal(0, 1, info["shape"])
        nets[0].set_param(conv + 1, j, v.astype(np.float32))
        nets[1].set_param(conv + 2, j, v.astype(np.float32))
    x = rng.normal(0, 2, (3, *shape)).astype(np.float32)
    y, y_twin = nets[0].forward(x), nets[1].forward(x)
    assert y.shape == y_twin.shape
    assert _rel(y, y_twin) <= RTOL
    assert not np.array_equal(y, y_twin)


def test_forward_from_the_conv_fuses_without_the_padding():
    net, twin, params, x = _pair(1)
    xp = np.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
    y = net.forward(xp, training=False, start=1)
    y_twin = twin.forward(xp, training=False, start=1)
    assert _rel(y, y_twin) <= RTOL
    assert _rel(y, net.forward(x, training=False)) <= RTOL
    assert not np.array_equal(y, y_twin)


def test_batch_size_changes():
    net, twin, _, x = _pair(2)
    for n in (4, 1, 3, 4):
        assert _rel(net.forward(x[:n]), twin.forward(x[:n])) <= RTOL


# ---------------------------------------------------------- parameter changes


@pytest.mark.parametrize("layer, j", [(1, 0), (2, 0), (2, 1), (5, 2), (5, 3), (4, 0),
                                      (7, 1), (8, 3)])
def test_fused_result_follows_set_param(layer, j):
    """No stale folded weights: a conv kernel/bias or any batch-norm parameter or
    statistic set after a fused forward is used by the next one."""
    net, twin, params, x = _pair(3)
    before = net.forward(x)                       # folds and caches
    v = params[layer, j] * 1.5 + 0.25
    net.set_param(layer, j, v)
    twin.set_param(_twin_index(layer), j, v)
    y, y_twin = net.forward(x), twin.forward(x)
    assert _rel(y, y_twin) <= RTOL
    assert _rel(y, before) > 100 * RTOL           # the change matters


def test_statistics_moved_by_training_forwards_are_folded():
    """A trainable batch norm that trained (forward(training=True) moves the moving
    statistics; no optimizer step touches gamma/beta) and is then frozen: the fused
    inference forward uses the new statistics."""
    net, twin, _, x = _pair(4)
    before = net.forward(x)                       # folds the initial statistics
    for k in range(3):
        xk = x * (1.0 + 0.5 * k) + 0.2
        net.forward(xk, training=True)            # all trainable: nothing fuses
        twin.forward(xk, training=True)
    for i in (2, 5, 8):
        for j in (2, 3):
            assert np.array_equal(net.get_param(i, j), twin.get_param(_twin_index(i), j))
    _freeze(net, len(CHAIN))
    _freeze(twin, len(CHAIN), twin=True)
    y, y_twin = net.forward(x), twin.forward(x)
    assert _rel(y, y_twin) <= RTOL
    assert _rel(y, before) > 100 * RTOL
    # ... and so does a training-mode forward of the now frozen network (fused: all frozen)
    y = net.forward(x, training=True)
    assert _rel(y, twin.forward(x, training=True)) <= RTOL


# ------------------------------------------------------------------------ backward


def test_backward_after_fused_inference_forward_is_unfused_bit_for_bit():
    """forward(training=False) fuses; backward(need_dx=True) recomputes the forward
    unfused first: dx and every gradient equal the unfused network's exactly."""
    net, twin, params, x = _pair(5)
    y = net.forward(x, training=False)
    y_twin = twin.forward(x, training=False)
    assert not np.array_equal(y, y_twin)
    assert all(net.layer_calls(i) == (1, 0) for i in range(len(CHAIN)))
    dy = np.random.default_rng(6).normal(size=y.shape).astype(np.float32)
    dx = net.backward(dy, need_dx=True)
    dx_twin = twin.backward(dy, need_dx=True)
    assert np.array_equal(dx, dx_twin)
    for (i, j) in params:
        g, g_twin = net.grad(i, j), twin.grad(_twin_index(i), j)
        if g_twin is None:
            assert g is None
        else:
            assert np.array_equal(g, g_twin), (i, j)
    # the recomputation is counted; a second backward needs none
    assert all(net.layer_calls(i) == (2, 1) for i in range(len(CHAIN)))
    net.backward(dy, need_dx=True)
    assert all(net.layer_calls(i) == (2, 2) for i in range(len(CHAIN)))


def test_backward_after_inference_forward_with_trainable_trunk():
    """Without need_dx the backward still reaches the trainable conv at layer 1."""
    net, twin, params, x = _pair(7)
    dy = np.ones((len(x), 1, 1, CLASSES), np.float32)
    net.forward(x)
    twin.forward(x)
    net.backward(dy)
    twin.backward(dy)
    for (i, j) in params:
        g, g_twin = net.grad(i, j), twin.grad(_twin_index(i), j)
        assert (g is None and g_twin is None) or np.array_equal(g, g_twin), (i, j)


def test_frozen_trunk_train_step_matches_unfused():
    """The tutorial's freeze: layers below TRUNK frozen, the head trainable; train_step
    runs the frozen trunk fused (a training forward, below the first trainable layer)
    and never needs its intermediate outputs.  Not bit-identical: the trunk's features
    differ by float32 rounding (~1e-7 relative), and so, through the head's training,
    do the losses, predictions and trained weights.

    SGD, not Adam: with random weights on 9x9 inputs some trunk channels come out
    constant; the training batch norm after the pointwise conv cancels them, so the true
    gradient of their kernel rows is 0 and both runs get rounding noise (~1e-8), which
    Adam normalises into different +-lr steps (weights that do not affect the output).
    SGD keeps noise at noise: every weight agrees to ~lr * 1e-8 per step."""
    net, twin, params, x = _pair(8, pw_bias=False)
    y = np.eye(CLASSES, dtype=np.float32)[np.random.default_rng(9).integers(0, CLASSES, len(x))]
    y = y.reshape(len(x), 1, 1, CLASSES)
    _freeze(net, TRUNK)
    _freeze(twin, TRUNK, twin=True)
    for n in (net, twin):
        n.set_optimizer("sgd", learning_rate=0.1, momentum=0.9)
    steps = 5
    for _ in range(steps):
        loss, p = net.train_step(x, y)
        loss_twin, p_twin = twin.train_step(x, y)
        assert abs(loss - loss_twin) <= 1e-5 * abs(loss_twin)
        assert _rel(p, p_twin) <= RTOL
    for (i, j), v in params.items():
        now, now_twin = net.get_param(i, j), twin.get_param(_twin_index(i), j)
        if i < TRUNK:
            assert np.array_equal(now, v)
        else:
            assert not np.array_equal(now, v)
            np.testing.assert_allclose(now, now_twin, rtol=1e-5, atol=1e-6)
    for i in range(len(CHAIN)):
        assert net.layer_calls(i) == (steps, 0 if i < TRUNK else steps), i


def test_need_dx_after_fused_training_forward():
    """forward(training=True) with the trunk frozen fuses the trunk; backward(need_dx=True)
    recomputes only the fused (frozen) groups: the trainable batch norm's statistics move
    once and dropout keeps its mask, so everything matches the unfused twin to rounding."""
    net, twin, params, x = _pair(10, pw_bias=False)
    _freeze(net, TRUNK)
    _freeze(twin, TRUNK, twin=True)
    y = net.forward(x, training=True)
    y_twin = twin.forward(x, training=True)
    assert _rel(y, y_twin) <= RTOL
    dy = np.random.default_rng(11).normal(size=y.shape).astype(np.float32)
    dx, dx_twin = net.backward(dy, need_dx=True), twin.backward(dy, need_dx=True)
    assert _rel(dx, dx_twin) <= RTOL
    for (i, j) in params:
        g, g_twin = net.grad(i, j), twin.grad(_twin_index(i), j)
        assert (g is None) == (g_twin is None), (i, j)
        if g is not None:
            assert _rel(g, g_twin) <= RTOL, (i, j)
        # statistics updated once (a second update would move them by ~1e-2)
        np.testing.assert_allclose(net.get_param(i, j), twin.get_param(_twin_index(i), j),
                                   rtol=1e-6, atol=1e-7)
    for i in range(len(CHAIN)):
        fwd, bwd = net.layer_calls(i)
        assert bwd == 1
        # the fused groups are recomputed, the trunk's last layer too: the training
        # forward kept its output (the first trainable layer's input) but wrote it
        # from the fused group, so that layer's own backward state must be made
        assert fwd == (2 if i < TRUNK else 1), i


# ------------------------------------------------------------------------- NaN


def test_nan_input_propagates_as_unfused():
    """oneDNN's relu/clip post-ops map NaN to 0; TF's activations (and ours) propagate it.
    A forward with a non-finite input therefore runs unfused."""
    net, twin, _, x = _pair(12)
    x = x.copy()
    x[0, 4, 4, 1] = np.nan
    x[2, 0, 0, 0] = np.inf
    for stop in (4, len(CHAIN)):
        y = net.forward(x, stop=stop)
        y_twin = twin.forward(x, stop=_twin_index(stop - 1) + 1)
        assert np.isnan(y).any()
        assert np.array_equal(np.isnan(y), np.isnan(y_twin))
        fin = np.isfinite(y_twin)
        assert np.array_equal(y[fin], y_twin[fin])    # unfused: bit for bit


def test_nonfinite_folded_parameters_run_unfused():
    net, twin, _, x = _pair(13)
    bad = -np.ones(16, np.float32)                    # variance + eps < 0: NaN scale
    net.set_param(5, 3, bad)
    twin.set_param(_twin_index(5), 3, bad)
    y, y_twin = net.forward(x, stop=7), twin.forward(x, stop=_twin_index(6) + 1)
    assert np.isnan(y).all() and np.isnan(y_twin).all()
