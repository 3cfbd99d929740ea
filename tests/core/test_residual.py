"""The ``add`` layer (a residual connection) and MobileNetV2's inverted residual block in
the C core, against the float64 NumPy twin (tests/reference/numpy_ops.graph_forward /
graph_backward), whose own gradients are checked against central finite differences.

The chain: a stem conv group, then two inverted residual blocks (1x1 expansion + BN +
ReLU6, 3x3 depthwise + BN + ReLU6, 1x1 linear projection + BN, add), the second block's
add reading the first block's add (as MobileNetV2's block_5 reads block_4's), then global
pooling and a softmax dense layer.

Tolerances.  The C core computes in float32: every layer is a float32 evaluation of the
twin's function, within ~K * eps32 (K = reduction depth: at most 3*3*8 = 72 here, eps32 =
2^-24 ~ 6e-8) relative to the magnitudes summed, i.e. ~5e-6 per layer, compounding over
~8 convolutions and batch norms (a training batch norm divides by a batch standard
deviation of order 1, so it does not amplify).  1e-4 relative to the largest value is
above that bound and far below any indexing, routing or accumulation error (order 1: a
gradient that misses one of the add's two paths is off by the whole skip contribution).
The finite differences of the float64 twin use h = 1e-6: truncation O(h^2 f''') ~ 1e-12,
cancellation O(eps64 |f| / h) ~ 1e-10 relative, so 1e-6 relative is a safe bound there.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.reference import numpy_ops as ref
from tests.reference.params import random_param

_core = pytest.importorskip("aslnet._core")

RTOL = 1e-4
SHAPE = (10, 10, 3)
CLASSES = 5
NB = dict(use_bias=False)


def _block(expand, out, source):
    return [
        ("conv2d", dict(filters=expand, kernel_size=1, **NB)),                # expansion
        ("batch_normalization", {}),
        ("activation", dict(activation="relu6")),
        ("depthwise_conv2d", dict(kernel_size=3, padding="same", **NB)),      # depthwise
        ("batch_normalization", {}),
        ("activation", dict(activation="relu6")),
        ("conv2d", dict(filters=out, kernel_size=1, **NB)),                   # projection
        ("batch_normalization", {}),                                          # (linear)
        ("add", dict(source=source)),
    ]


CHAIN = (
    [("conv2d", dict(filters=6, kernel_size=3, strides=2, padding="same", **NB)),  # 0
     ("batch_normalization", {}),                                                  # 1
     ("activation", dict(activation="relu6"))]                                     # 2
    + _block(24, 6, source=2)                                                      # 3-11
    + _block(18, 6, source=11)                                                     # 12-20
    + [("global_average_pooling2d", {}),                                           # 21
       ("dense", dict(units=CLASSES, activation="softmax"))]                       # 22
)
ADDS = [i for i, (k, _) in enumerate(CHAIN) if k == "add"]


def _build(chain, params, shape=SHAPE, twin=False):
    """The net; twin=True puts a linear activation after every conv (an exact copy that
    breaks the conv -> batch-norm pattern: nothing fuses) and renumbers the sources."""
    index, net = {}, _core.Net(shape)
    for i, (kind, cfg) in enumerate(chain):
        if kind == "add":
            cfg = dict(cfg, source=index[cfg["source"]])
        index[i] = net.add(kind, **cfg)
        if twin and kind in ("conv2d", "depthwise_conv2d"):
            index[i] = net.add("activation", activation="linear")
    for i, ps in params.items():
        for j, v in enumerate(ps):
            net.set_param(index[i] if not twin else index[i] - (chain[i][0] in (
                "conv2d", "depthwise_conv2d")), j, v)
    return net, index


def _params(chain, seed=0, shape=SHAPE):
    rng = np.random.default_rng(seed)
    net, _ = _build(chain, {}, shape)
    return {i: [random_param(rng, p["name"], p["shape"], w_scale=1.5, var_low=0.3)
                for p in net.params(i)] for i in range(len(chain))}


def _x(seed=1, n=4, shape=SHAPE):
    return np.random.default_rng(seed).uniform(-1, 1, (n, *shape)).astype(np.float32)


def _rel(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return np.abs(got - want).max() / np.abs(want).max()


# ------------------------------------------------------------------------ forward


@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
def test_forward_matches_float64_twin(training):
    params = _params(CHAIN)
    x = _x()
    net, _ = _build(CHAIN, params)
    outs, _ = ref.graph_forward(CHAIN, [params[i] for i in range(len(CHAIN))], x, training)
    for stop in (ADDS[0] + 1, ADDS[1] + 1, len(CHAIN)):
        y = net.forward(x, training=training, stop=stop)
        assert _rel(y, outs[stop - 1]) <= RTOL, stop


def test_fused_inference_equals_unfused():
    """Each block runs as three fused convolutions (the projection's 'conv + BN, no
    activation' too) and the add; the twin runs nothing fused.  Same function, other
    rounding: equal to float tolerance, not bit for bit (which proves fusion ran)."""
    params = _params(CHAIN)
    x = _x()
    net, _ = _build(CHAIN, params)
    twin, index = _build(CHAIN, params, twin=True)
    for stop in (ADDS[0] + 1, len(CHAIN) - 2):
        y = net.forward(x, stop=stop)
        y_twin = twin.forward(x, stop=index[stop - 1] + 1)
        assert _rel(y, y_twin) <= RTOL
        assert not np.array_equal(y, y_twin)


@pytest.mark.parametrize("bad", ["input", "projection_bn", "skip_source"])
def test_nan_through_an_add_propagates_as_unfused(bad):
    """oneDNN's fused ReLU6 maps NaN to 0; TF propagates it.  The executor checks for
    NaN/Inf at the input and after unfused layers, but takes an add of two finite
    outputs as finite without scanning: an add fed a NaN (from the input, from a
    projection whose folded parameters are NaN, or through its skip source) must leave
    the next group unfused, as the twin that fuses nothing."""
    params = _params(CHAIN)
    x = _x()
    if bad == "input":
        x[1, 3, 3, 0] = np.nan
    elif bad == "projection_bn":                     # block 1's projection BN (10):
        params[10][3] = -np.ones_like(params[10][3])     # variance + eps < 0: NaN scale
    else:                                            # the stem BN (1): NaN in the
        params[1][3] = params[1][3].copy()               # skip source (2) and the chain
        params[1][3][0] = -1.0
    net, _ = _build(CHAIN, params)
    twin, index = _build(CHAIN, params, twin=True)
    # after the first add, after the group that reads it (expansion + BN + ReLU6), and
    # after the second add
    for stop in (ADDS[0] + 1, ADDS[0] + 4, ADDS[1] + 1):
        y = net.forward(x, stop=stop)
        y_twin = twin.forward(x, stop=index[stop - 1] + 1)
        assert np.isnan(y_twin).any()
        assert np.array_equal(np.isnan(y), np.isnan(y_twin)), stop
        fin = np.isfinite(y_twin)
        assert not fin.any() or _rel(y[fin], y_twin[fin]) <= RTOL


def test_source_inside_a_fused_group_stays_available():
    """An add whose source is a batch norm that would fuse with the ReLU6 after it: the
    group must end at the batch norm (its output is read later)."""
    chain = CHAIN[:3] + _block(12, 6, source=1)
    params = _params(chain)
    x = _x()
    net, _ = _build(chain, params)
    outs, _ = ref.graph_forward(chain, [params[i] for i in range(len(chain))], x)
    assert _rel(net.forward(x), outs[-1]) <= RTOL


def test_add_of_a_layer_with_itself_and_of_a_reshape():
    net = _core.Net((2, 2, 3))
    net.add("activation", activation="relu")         # 0
    net.add("reshape", target_shape=(1, 4, 3))       # 1 (an alias of 0's buffer)
    net.add("activation", activation="linear")       # 2
    net.add("add", source=1)                         # 3: relu(x) + relu(x)
    net.add("add", source=2)                         # 4: 2 relu(x) + relu(x)
    x = _x(n=2, shape=(2, 2, 3))
    y = net.forward(x)
    np.testing.assert_array_equal(y, 3 * np.maximum(x, 0).reshape(2, 1, 4, 3))
    dx = net.backward(np.ones_like(y), need_dx=True)
    np.testing.assert_array_equal(dx, 3.0 * (x > 0))


# ------------------------------------------------------------------------ gradients


def _loss_weights(n):
    return np.random.default_rng(7).normal(size=(n, 1, 1, CLASSES))


def test_twin_gradients_match_finite_differences():
    """The float64 twin's analytic gradients (both paths of every add summed) against
    central differences of L = sum(w * y) in a training forward."""
    chain = CHAIN
    params = [[p.astype(np.float64) for p in ps] for ps in
              (_params(chain)[i] for i in range(len(chain)))]
    x = _x(n=3).astype(np.float64)
    w = _loss_weights(3)

    def loss(xx, ps):
        return float((ref.graph_forward(chain, ps, xx, True)[0][-1] * w).sum())

    outs, caches = ref.graph_forward(chain, params, x, True)
    dx, grads = ref.graph_backward(chain, caches, w)
    h, rng = 1e-6, np.random.default_rng(3)
    checks = [(None, None)] + [(i, 0) for i in (0, 3, 9, 12, 18)] + [(4, 0), (16, 1)]
    for i, j in checks:
        target = x if i is None else params[i][j]
        analytic = dx if i is None else grads[i][j]
        for idx in [tuple(rng.integers(0, s) for s in target.shape) for _ in range(4)]:
            old = target[idx]
            target[idx] = old + h
            up = loss(x, params)
            target[idx] = old - h
            down = loss(x, params)
            target[idx] = old
            fd = (up - down) / (2 * h)
            assert abs(fd - analytic[idx]) <= 1e-6 * max(1.0, np.abs(analytic).max()), (i, j)


@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
def test_gradients_match_twin(training):
    """Parameter gradients of every layer and the input gradient; the skip tensors'
    gradients must hold both paths (a missing path is off by O(1))."""
    params = _params(CHAIN)
    x = _x()
    w = _loss_weights(len(x))
    net, _ = _build(CHAIN, params)
    net.forward(x, training=training)
    dx = net.backward(w.astype(np.float32), need_dx=True)
    outs, caches = ref.graph_forward(CHAIN, [params[i] for i in range(len(CHAIN))], x,
                                     training)
    dx_ref, grads = ref.graph_backward(CHAIN, caches, w)
    assert _rel(dx, dx_ref) <= RTOL
    for i in range(len(CHAIN)):
        for j, g in enumerate(grads[i]):
            if g is not None:
                assert _rel(net.grad(i, j), g) <= RTOL, (i, j)


def test_gradient_with_a_frozen_trunk_reaches_only_the_trainable_layers():
    """Layers below the second block frozen: the first add's skip path ends below the
    first trainable layer (nothing to accumulate there), the second's does not."""
    params = _params(CHAIN)
    x = _x()
    w = _loss_weights(len(x))
    net, _ = _build(CHAIN, params)
    for i in range(12):
        net.set_trainable(i, False)
    net.forward(x, training=True)
    net.backward(w.astype(np.float32))
    outs, caches = ref.graph_forward(CHAIN, [params[i] for i in range(len(CHAIN))], x,
                                     True)
    # the frozen batch norms run in inference mode: rebuild the twin that way
    chain_ref = [(k, c) for k, c in CHAIN]
    outs, caches = [], []
    h = x.astype(np.float64)
    for i, (kind, cfg) in enumerate(chain_ref):
        if kind == "add":
            h, cache = h + outs[cfg["source"]], None
        else:
            h, cache = ref.forward(kind, h, params[i], cfg, training=i >= 12)
        outs.append(h)
        caches.append(cache)
    _, grads = ref.graph_backward(chain_ref, caches, w)
    for i in range(12):
        assert all(net.grad(i, j) is None for j in range(len(params[i])))
    for i in range(12, len(CHAIN)):
        for j, g in enumerate(grads[i]):
            if g is not None:
                assert _rel(net.grad(i, j), g) <= RTOL, (i, j)


def test_train_step_from_a_cached_trunk_equals_the_full_step():
    """Frozen stem (layers 0-2, the first block's skip source): train_step from layer 3
    on the cached stem output equals the full train_step; the add reads its source from
    the given x.  A start inside a residual span is refused."""
    params = _params(CHAIN)
    x = _x()
    y = np.eye(CLASSES, dtype=np.float32)[[0, 1, 2, 3]].reshape(4, 1, 1, CLASSES)
    full, _ = _build(CHAIN, params)
    cached, _ = _build(CHAIN, params)
    for net in (full, cached):
        for i in range(3):
            net.set_trainable(i, False)
        net.set_optimizer("adam", learning_rate=1e-2)
    trunk = cached.forward(x, stop=3)
    for _ in range(2):
        l_full, p_full = full.train_step(x, y)
        l_cached, p_cached = cached.train_step(trunk, y, start=3)
        assert l_full == l_cached
        np.testing.assert_array_equal(p_full, p_cached)
    for i in range(3, len(CHAIN)):
        for j in range(len(params[i])):
            np.testing.assert_array_equal(full.get_param(i, j), cached.get_param(i, j))
    cached.set_trainable(3, False)
    with pytest.raises(ValueError, match=r"layer 11 \(add\) also reads the output of layer 2"):
        cached.train_step(cached.forward(x, stop=4), y, start=4)
    with pytest.raises(ValueError, match="start at layer 3 or below"):
        cached.forward(cached.forward(x, stop=4), start=4)


def _backward_without_skips(chain, caches, dy):
    """The twin's backward with the adds' skip paths dropped: what a broken accumulation
    would give (to show the bfloat16 bound below still sees it)."""
    g = np.asarray(dy, np.float64)
    for i in reversed(range(len(chain))):
        if chain[i][0] != "add":
            g, _ = ref.backward(chain[i][0], g, caches[i])
    return g


def test_bfloat16_compute_path():
    """With bfloat16 convolutions (where this CPU has them) the blocks still compute the
    twin's function to bfloat16 accuracy.  Forward: inputs and weights rounded to 8
    significant bits (relative error <= 2^-9 each), float32 accumulation, ~8
    convolutions: ~1e-2 relative; 3e-2 leaves a margin.  Backward: the output gradients
    are rounded too, at every convolution on the way down, and this random chain
    amplifies those errors towards the input (the same chain without adds shows it as
    much: 0.05-0.14 relative measured); tests/core/test_bfloat16.py checks the rounding
    itself against a rounding-aware twin.  Here the point is the add: dropping the skip
    paths' gradient changes dx by far more than the 0.25 allowed (asserted), so the
    bound still catches a wrong accumulation."""
    params = _params(CHAIN)
    x = _x()
    w = _loss_weights(len(x))
    net, _ = _build(CHAIN, params)
    net.set_compute_dtype("bfloat16")
    outs, caches = ref.graph_forward(CHAIN, [params[i] for i in range(len(CHAIN))], x)
    assert _rel(net.forward(x, stop=len(CHAIN) - 2), outs[-3]) <= 3e-2
    net.forward(x)
    dx = net.backward(w.astype(np.float32), need_dx=True)
    dx_ref, grads = ref.graph_backward(CHAIN, caches, w)
    assert _rel(_backward_without_skips(CHAIN, caches, w), dx_ref) > 0.5
    assert _rel(dx, dx_ref) <= 0.25
    for i in (18, 22):   # near the output: one or two rounded gradients
        assert _rel(net.grad(i, 0), grads[i][0]) <= 3e-2, i
    for i in (0, 3, 9, 12):
        assert _rel(net.grad(i, 0), grads[i][0]) <= 0.25, i


# ------------------------------------------------------------------------ bad input


def test_bad_adds_are_refused_with_clear_errors():
    net = _core.Net((8, 8, 3))
    net.add("conv2d", filters=4, kernel_size=3, padding="same")      # 0: (8, 8, 4)
    net.add("conv2d", filters=4, kernel_size=3, strides=2, padding="same")   # 1: (4, 4, 4)
    with pytest.raises(ValueError, match=r"\(4, 4, 4\) and the output of its source, "
                                         r"layer 0, \(8, 8, 4\) differ"):
        net.add("add", source=0)
    for bad in (2, 5, -1):
        with pytest.raises(ValueError, match=r"source must be the index of an earlier "
                                             r"layer, in \[0, 2\)"):
            net.add("add", source=bad)
    with pytest.raises(TypeError, match="needs source="):
        net.add("add")
    assert net.num_layers == 2
    net.add("add", source=1)
    assert net.forward(np.ones((1, 8, 8, 3), np.float32)).shape == (1, 4, 4, 4)
