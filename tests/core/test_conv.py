"""Conv2D / DepthwiseConv2D / Dense (csrc/conv2d.c, csrc/dense.c): what the
generic layer harness does not cover -- a sweep of TF 'same'/'valid'
geometries (odd/even sizes, stride > kernel, non-square), the cached weights
reorder seeing set_param and optimizer steps, frozen layers doing no
weight-gradient work, and backward after a batch-size change (the backward
primitives are built lazily)."""

import itertools
import zlib

import numpy as np
import pytest

_core = pytest.importorskip("aslnet._core")


# ---- float64 reference (TF semantics) ---------------------------------------

def _same_pad(size, k, s):
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def _pad(x, kh, kw, s, padding):
    if padding == "valid":
        return x, (0, 0)
    (t, b), (l, r) = _same_pad(x.shape[1], kh, s[0]), _same_pad(x.shape[2], kw, s[1])
    return np.pad(x, ((0, 0), (t, b), (l, r), (0, 0))), (t, l)


def _taps(xp, kh, kw, s, oh, ow):
    for i, j in itertools.product(range(kh), range(kw)):
        sl = (slice(None), slice(i, i + (oh - 1) * s[0] + 1, s[0]),
              slice(j, j + (ow - 1) * s[1] + 1, s[1]))
        yield i, j, sl


def _out_size(size, k, s, padding):
    return -(-size // s) if padding == "same" else (size - k) // s + 1


def conv_ref(x, k, b, s, padding, dz, depthwise):
    """y, dx, dk, db for y = conv(x, k) + b and upstream gradient dz."""
    x, k = x.astype(np.float64), k.astype(np.float64)
    kh, kw = k.shape[:2]
    n, h, w, c = x.shape
    oh, ow = _out_size(h, kh, s[0], padding), _out_size(w, kw, s[1], padding)
    xp, (t, l) = _pad(x, kh, kw, s, padding)
    dxp, dk = np.zeros_like(xp), np.zeros_like(k)
    if depthwise:
        dm = k.shape[3]
        y = np.zeros((n, oh, ow, c, dm))
        dz5 = None if dz is None else dz.astype(np.float64).reshape(n, oh, ow, c, dm)
        for i, j, sl in _taps(xp, kh, kw, s, oh, ow):
            y += xp[sl][..., None] * k[i, j]
            if dz5 is not None:
                dk[i, j] = np.einsum("nhwc,nhwcm->cm", xp[sl], dz5)
                dxp[sl] += (dz5 * k[i, j]).sum(-1)
        y = y.reshape(n, oh, ow, c * dm)
    else:
        y = np.zeros((n, oh, ow, k.shape[3]))
        for i, j, sl in _taps(xp, kh, kw, s, oh, ow):
            y += xp[sl] @ k[i, j]
            if dz is not None:
                dk[i, j] = np.einsum("nhwc,nhwo->co", xp[sl], dz)
                dxp[sl] += dz @ k[i, j].T
    if b is not None:
        y += b
    dx = dxp[:, t:t + h, l:l + w, :]
    db = None if dz is None else dz.astype(np.float64).sum((0, 1, 2))
    return y, dx, dk, db


def _close(a, b, tol=1e-5):
    b = np.asarray(b, np.float64)
    err = np.abs(np.asarray(a, np.float64) - b).max() / max(1.0, np.abs(b).max())
    assert err < tol, err


def _conv_net(shape, depthwise, ks, s, padding, use_bias=True, dm=1, filters=4,
              activation="linear"):
    net = _core.Net(shape)
    if depthwise:
        net.add("depthwise_conv2d", kernel_size=ks, strides=s, padding=padding,
                depth_multiplier=dm, use_bias=use_bias, activation=activation)
    else:
        net.add("conv2d", filters=filters, kernel_size=ks, strides=s,
                padding=padding, use_bias=use_bias, activation=activation)
    return net


def _randomize(net, rng, i=0):
    vals = []
    for j, p in enumerate(net.params(i)):
        v = rng.standard_normal(p["shape"]).astype(np.float32)
        net.set_param(i, j, v)
        vals.append(v)
    return vals


# ---- geometry sweep ---------------------------------------------------------

GEOMS = [
    # (input h, w, kernel, strides)
    ((7, 7), (3, 3), (2, 2)),      # odd input, stride 2: even padding split
    ((8, 8), (3, 3), (2, 2)),      # even input, stride 2: extra pad bottom/right
    ((8, 6), (2, 3), (1, 2)),      # non-square everything
    ((5, 9), (1, 1), (3, 2)),      # 1x1 with stride > kernel
    ((6, 7), (5, 5), (1, 1)),      # kernel almost as large as the input
    ((1, 1), (3, 3), (1, 1)),      # 'same' on a single pixel
]


@pytest.mark.parametrize("depthwise", [False, True], ids=["conv2d", "depthwise"])
@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("geom", GEOMS, ids=lambda g: "x".join(map(str, g[0] + g[1] + g[2])))
def test_geometry(geom, padding, depthwise):
    (h, w), ks, s = geom
    if padding == "valid" and (h < ks[0] or w < ks[1]):
        pytest.skip("input smaller than the kernel")
    rng = np.random.default_rng(zlib.crc32(repr((geom, padding, depthwise)).encode()))
    c, dm = 3, 2
    net = _conv_net((h, w, c), depthwise, ks, s, padding, dm=dm, filters=5)
    k, b = _randomize(net, rng)
    for n in (1, 3):
        x = rng.standard_normal((n, h, w, c)).astype(np.float32)
        y = net.forward(x, training=True)
        dz = rng.standard_normal(y.shape).astype(np.float32)
        yr, dxr, dkr, dbr = conv_ref(x, k, b, s, padding, dz, depthwise)
        assert y.shape == yr.shape
        assert tuple(net.output_shape(0)) == yr.shape[1:]
        _close(y, yr)
        dx = net.backward(dz, need_dx=True)
        _close(dx, dxr)
        _close(net.grad(0, 0), dkr)
        _close(net.grad(0, 1), dbr)


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("cin, filters", [(128, 130), (16, 8)], ids=["sgemm", "onednn"])
def test_pointwise_weights_gradient(cin, filters, padding):
    """A 1x1 stride-1 Conv2D's weights gradient: one sgemm X^T dZ from 128 channels in
    and out (conv2d.c), oneDNN's kernel below; both against the float64 reference."""
    rng = np.random.default_rng(cin)
    net = _conv_net((3, 5, cin), False, (1, 1), (1, 1), padding, filters=filters)
    k, b = _randomize(net, rng)
    for n in (1, 4):
        x = rng.standard_normal((n, 3, 5, cin)).astype(np.float32)
        y = net.forward(x, training=True)
        dz = rng.standard_normal(y.shape).astype(np.float32)
        _, dxr, dkr, dbr = conv_ref(x, k, b, (1, 1), padding, dz, False)
        dx = net.backward(dz, need_dx=True)
        _close(dx, dxr)
        _close(net.grad(0, 0), dkr)
        _close(net.grad(0, 1), dbr)


def test_invalid_descriptions():
    net = _core.Net((5, 5, 2))
    with pytest.raises(ValueError, match="smaller than kernel"):
        net.add("conv2d", filters=2, kernel_size=(6, 3), strides=(1, 1), padding="valid")
    with pytest.raises(ValueError, match="depth_multiplier"):
        net.add("depthwise_conv2d", kernel_size=(3, 3), depth_multiplier=0)
    with pytest.raises(ValueError, match="strides"):
        net.add("conv2d", filters=2, kernel_size=(3, 3), strides=(0, 1))
    with pytest.raises(ValueError, match="units"):
        net.add("dense", units=0)


# ---- cached weights reorder ------------------------------------------------

@pytest.mark.parametrize("depthwise", [False, True], ids=["conv2d", "depthwise"])
def test_weights_cache_sees_updates(depthwise):
    rng = np.random.default_rng(7)
    shape, s = (9, 9, 16), (1, 1)
    net = _conv_net(shape, depthwise, (3, 3), s, "same", filters=16)
    x = rng.standard_normal((4,) + shape).astype(np.float32)
    for _ in range(2):          # set_param between forwards
        k, b = _randomize(net, rng)
        _close(net.forward(x), conv_ref(x, k, b, s, "same", None, depthwise)[0])
    net.set_optimizer("sgd", learning_rate=0.1)
    for _ in range(2):          # optimizer steps between forwards
        y = net.forward(x, training=True)
        dz = rng.standard_normal(y.shape).astype(np.float32)
        dx = net.backward(dz, need_dx=True)
        _, dxr, dkr, dbr = conv_ref(x, k, b, s, "same", dz, depthwise)
        _close(dx, dxr)          # backward-data uses the current weights too
        net.apply_gradients()
        k = (k - np.float32(0.1) * net.grad(0, 0)).astype(np.float32)
        b = (b - np.float32(0.1) * net.grad(0, 1)).astype(np.float32)
        _close(net.get_param(0, 0), k, 1e-6)
        _close(net.forward(x), conv_ref(x, k, b, s, "same", None, depthwise)[0])


# ---- frozen layers -----------------------------------------------------------

@pytest.mark.parametrize("kind", ["conv2d", "depthwise_conv2d", "dense"])
def test_frozen_layer_leaves_gradients(kind):
    rng = np.random.default_rng(3)
    shape = (6, 5, 3)
    if kind == "dense":
        net = _core.Net(shape)
        net.add("dense", units=4, activation="relu", use_bias=True)
    else:
        net = _conv_net(shape, kind != "conv2d", (3, 3), (2, 2), "same",
                        activation="relu", dm=2)
    _randomize(net, rng)
    x = rng.standard_normal((2,) + shape).astype(np.float32)
    y = net.forward(x, training=True)
    net.backward(rng.standard_normal(y.shape).astype(np.float32), need_dx=False)
    before = [net.grad(0, j).copy() for j in range(len(net.params(0)))]
    assert all(np.abs(g).max() > 0 for g in before)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    net.set_trainable(0, False)
    net.forward(x, training=True)
    dx = net.backward(dy, need_dx=True)
    assert dx.shape == x.shape and np.isfinite(dx).all() and np.abs(dx).max() > 0
    for j, g in enumerate(before):
        after = net.grad(0, j)   # the frozen backward leaves the buffers as they were
        assert after is not None, f"param {j}: gradient buffer dropped"
        np.testing.assert_array_equal(after, g, err_msg=f"param {j}: overwritten while frozen")
    # the same backward on the unfrozen layer does change them: the check above could fail
    net.set_trainable(0, True)
    net.forward(x, training=True)
    net.backward(dy, need_dx=False)
    assert not any(np.array_equal(net.grad(0, j), g) for j, g in enumerate(before))


def test_never_trainable_has_no_gradients():
    rng = np.random.default_rng(4)
    net = _conv_net((5, 5, 3), False, (3, 3), (1, 1), "same")
    _randomize(net, rng)
    net.set_trainable(0, False)
    x = rng.standard_normal((2, 5, 5, 3)).astype(np.float32)
    y = net.forward(x, training=True)
    dx = net.backward(np.ones_like(y), need_dx=True)
    assert net.grad(0, 0) is None and net.grad(0, 1) is None
    k, b = net.get_param(0, 0), net.get_param(0, 1)
    _close(dx, conv_ref(x, k, b, (1, 1), "same", np.ones_like(y), False)[1])


# ---- batch size changes -----------------------------------------------------

@pytest.mark.parametrize("depthwise", [False, True], ids=["conv2d", "depthwise"])
def test_backward_after_batch_change(depthwise):
    rng = np.random.default_rng(5)
    shape, s = (7, 6, 4), (2, 2)
    net = _conv_net(shape, depthwise, (3, 3), s, "same", activation="relu6")
    k, b = _randomize(net, rng)
    for n in (3, 1, 5, 3):
        x = rng.standard_normal((n,) + shape).astype(np.float32)
        if n != 5:      # a forward-only batch size in between
            y = net.forward(x, training=True)
            dy = rng.standard_normal(y.shape).astype(np.float32)
            z, *_ = conv_ref(x, k, b, s, "same", None, depthwise)
            dz = dy * ((z > 0) & (z < 6))
            _, dxr, dkr, _ = conv_ref(x, k, b, s, "same", dz, depthwise)
            _close(y, np.clip(z, 0, 6))
            _close(net.backward(dy, need_dx=True), dxr)
            _close(net.grad(0, 0), dkr)
        else:
            net.forward(x)
