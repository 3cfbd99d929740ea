"""The C kinds of issue 14 against float64 NumPy twins written here, and their
gradients against float64 central finite differences of those twins:

    max_pooling2d / average_pooling2d  (pool_size, strides, 'valid' / 'same')
    activation sigmoid / tanh / swish / relu_args (Keras ReLU / LeakyReLU)
    rescaling, conv2d and depthwise_conv2d with dilation, separable_conv2d

Each case is a one-layer ``_core.Net``; L = sum(r * y) for a random r.

Tolerances.  Error metric: max|C - ref| / max|ref| over a tensor.  A float32
result that sums K terms has a worst-case relative error of about K * 2^-24
(Higham's gamma_K), so the bound is 8 * max(K, 16) * 2^-24 with K the
reduction depth of the tensor (conv: kh*kw*cin; a kernel gradient:
n*oh*ow; pooling: the window; element-wise: 1), as tests/core/test_layers.py
argues; 8 covers the few roundings around the sum (bias, the activation,
expf's ulps) and 16 the element-wise ops.  The finite differences of the
float64 twin (step 1e-6, central) are exact to ~1e-9 relative (truncation
h^2 f''' ~ 1e-12, rounding eps64 |L| / h ~ 1e-9 for |L| ~ 10), far below
those bounds, so the C gradients are compared to them directly.  Kinks
(max-pool ties, relu's 0 / threshold / max_value) are kept 0.05 or more away
from every value, further than the step.
"""
from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

_core = pytest.importorskip("aslnet._core")

EPS32 = 2.0 ** -24
FD_STEP = 1e-6


def _tol(k):
    return 8 * max(k, 16) * EPS32


def _rel(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    s = np.abs(want).max()
    return float(np.abs(got - want).max() / (s if s > 0 else 1.0))


# ---------------------------------------------------------------- float64 twins


def _same(n, k, s, d=1):
    """TF's 'same' rule, written out here (independent of asl_conv_geometry)."""
    keff = (k - 1) * d + 1
    out = -(-n // s)
    total = max((out - 1) * s + keff - n, 0)
    return out, total // 2, total - total // 2


def _geometry(n, k, s, padding, d=1):
    if padding == "same":
        return _same(n, k, s, d)
    return (n - ((k - 1) * d + 1)) // s + 1, 0, 0


def pool(x, k, s, padding, mode):
    n, h, w, c = x.shape
    oh, pt, _ = _geometry(h, k[0], s[0], padding)
    ow, pl, _ = _geometry(w, k[1], s[1], padding)
    y = np.empty((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * s[0] - pt, j * s[1] - pl
            win = x[:, max(r0, 0):min(r0 + k[0], h), max(c0, 0):min(c0 + k[1], w), :]
            y[:, i, j] = win.max(axis=(1, 2)) if mode == "max" else win.mean(axis=(1, 2))
    return y


def conv(x, kernel, bias, s, padding, d, depthwise=False):
    n, h, w, c = x.shape
    kh, kw = kernel.shape[:2]
    oh, pt, pb = _geometry(h, kh, s[0], padding, d[0])
    ow, pl, pr = _geometry(w, kw, s[1], padding, d[1])
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    y = 0.0
    for a in range(kh):
        for b in range(kw):
            patch = xp[:, a * d[0]:a * d[0] + (oh - 1) * s[0] + 1:s[0],
                       b * d[1]:b * d[1] + (ow - 1) * s[1] + 1:s[1], :]
            if depthwise:   # kernel (kh, kw, c, m): output channel ci * m + mi
                y = y + (patch[..., :, None] * kernel[a, b]).reshape(n, oh, ow, -1)
            else:
                y = y + patch @ kernel[a, b]
    return y + (0.0 if bias is None else bias)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def relu_args(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """keras.activations.relu, in float64."""
    pos = np.where(x > threshold, x, 0.0) if threshold else np.maximum(x, 0.0)
    if max_value is not None:
        pos = np.clip(pos, 0.0, max_value)
    return pos - negative_slope * np.maximum(threshold - x, 0.0)


ACT = {"sigmoid": sigmoid, "tanh": np.tanh, "swish": lambda x: x * sigmoid(x),
       "silu": lambda x: x * sigmoid(x)}


def twin(kind, cfg, x, params):
    if kind in ("max_pooling2d", "average_pooling2d"):
        k = _pair(cfg.get("kernel_size", 1))
        return pool(x, k, _pair(cfg.get("strides", 1)), cfg.get("padding", "valid"),
                    "max" if kind == "max_pooling2d" else "avg")
    if kind == "activation":
        a = cfg["activation"]
        if a == "relu_args":
            return relu_args(x, cfg.get("negative_slope", 0.0), cfg.get("max_value"),
                             cfg.get("threshold", 0.0))
        return ACT[a](x)
    if kind == "rescaling":
        return x * cfg["scale"] + cfg.get("offset", 0.0)
    s, d = _pair(cfg.get("strides", 1)), _pair(cfg.get("dilation_rate", 1))
    pad = cfg.get("padding", "valid")
    if kind == "conv2d":
        return conv(x, params[0], params[1] if len(params) > 1 else None, s, pad, d)
    if kind == "depthwise_conv2d":
        return conv(x, params[0], params[1] if len(params) > 1 else None, s, pad, d, True)
    if kind == "separable_conv2d":
        mid = conv(x, params[0], None, s, pad, d, True)
        return conv(mid, params[1], params[2] if len(params) > 2 else None, (1, 1), "valid",
                    (1, 1))
    raise KeyError(kind)


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


# ---------------------------------------------------------------- cases

CASES = {
    "maxpool_2_valid": ("max_pooling2d", (5, 6, 3), dict(kernel_size=2, strides=2)),
    "maxpool_3s2_same_odd": ("max_pooling2d", (7, 5, 2), dict(kernel_size=3, strides=2,
                                                             padding="same")),
    "maxpool_2x3_s1_same": ("max_pooling2d", (4, 5, 2), dict(kernel_size=(2, 3), strides=1,
                                                            padding="same")),
    "avgpool_2_valid": ("average_pooling2d", (6, 5, 3), dict(kernel_size=2, strides=2)),
    "avgpool_3s2_same_excludes_pad": ("average_pooling2d", (5, 7, 2),
                                      dict(kernel_size=3, strides=2, padding="same")),
    "avgpool_3x2_s1_same": ("average_pooling2d", (4, 4, 2), dict(kernel_size=(3, 2),
                                                                padding="same")),
    "sigmoid": ("activation", (3, 4, 5), dict(activation="sigmoid")),
    "tanh": ("activation", (3, 4, 5), dict(activation="tanh")),
    "swish": ("activation", (3, 4, 5), dict(activation="swish")),
    "leaky_relu": ("activation", (3, 4, 5), dict(activation="relu_args", negative_slope=0.3)),
    "relu_max4": ("activation", (3, 4, 5), dict(activation="relu_args", max_value=4.0)),
    "relu_threshold": ("activation", (3, 4, 5), dict(activation="relu_args", threshold=0.5)),
    "relu_all_args": ("activation", (3, 4, 5), dict(activation="relu_args", max_value=2.5,
                                                    negative_slope=0.2, threshold=-0.7)),
    "rescaling": ("rescaling", (3, 4, 3), dict(scale=1 / 127.5, offset=-1.0)),
    "conv_dilation2_same": ("conv2d", (8, 7, 3), dict(filters=4, kernel_size=3,
                                                      dilation_rate=2, padding="same")),
    "conv_dilation_2x3_valid": ("conv2d", (9, 9, 2), dict(filters=3, kernel_size=(3, 2),
                                                          dilation_rate=(2, 3))),
    "conv_strides_2x1_same": ("conv2d", (7, 6, 3), dict(filters=2, kernel_size=3,
                                                        strides=(2, 1), padding="same")),
    "dw_dilation2_same_dm2": ("depthwise_conv2d", (7, 7, 3),
                              dict(kernel_size=3, dilation_rate=2, padding="same",
                                   depth_multiplier=2)),
    "separable_same": ("separable_conv2d", (6, 6, 3), dict(filters=4, kernel_size=3,
                                                           padding="same")),
    "separable_s2_dm2_nobias": ("separable_conv2d", (7, 7, 2),
                                dict(filters=3, kernel_size=3, strides=2, depth_multiplier=2,
                                     use_bias=False)),
    "separable_dilation2": ("separable_conv2d", (8, 8, 2), dict(filters=2, kernel_size=3,
                                                                dilation_rate=2)),
}

# kink points of each piecewise case, kept >= 0.05 away from every input value
_KINKS = {"leaky_relu": (0.0,), "relu_max4": (0.0, 4.0), "relu_threshold": (0.0, 0.5),
          "relu_all_args": (-0.7, 0.0, 2.5)}


def _input(name, kind, shape, rng, n=2):
    if kind == "max_pooling2d":   # distinct values 0.1 apart: no ties within FD steps
        size = n * int(np.prod(shape))
        return (rng.permutation(size) * 0.1 - 0.05 * size).reshape(n, *shape)
    x = rng.normal(0.3, 1.5, (n, *shape))
    for k in _KINKS.get(name, ()):
        near = np.abs(x - k) < 0.05
        x = np.where(near, x + 0.1 * np.sign(x - k + 1e-12), x)
    return x


def _build(name):
    kind, shape, cfg = CASES[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    net = _core.Net(shape)
    net.add(kind, **cfg)
    params = []
    for j, info in enumerate(net.params(0)):
        fan = int(np.prod(info["shape"][:-1])) or 1
        p = rng.normal(0, 1 / math.sqrt(fan), info["shape"]).astype(np.float32)
        net.set_param(0, j, p)
        params.append(p.astype(np.float64))
    x = _input(name, kind, shape, rng).astype(np.float32).astype(np.float64)
    r = rng.normal(0, 1, (2, *net.output_shape(0))).astype(np.float32).astype(np.float64)
    return kind, cfg, net, params, x, r


def _depth(kind, cfg, shape, params):
    k = _pair(cfg.get("kernel_size", 1))
    if kind in ("max_pooling2d", "average_pooling2d"):
        return k[0] * k[1], k[0] * k[1]
    if kind == "conv2d":
        return k[0] * k[1] * shape[2] + 1, k[0] * k[1] * params[0].shape[3]
    if kind == "depthwise_conv2d":
        return k[0] * k[1] + 1, k[0] * k[1] * params[0].shape[3]
    if kind == "separable_conv2d":
        m = params[1].shape[2]
        return k[0] * k[1] * m + m + 1, k[0] * k[1] * params[1].shape[3] * m
    return 1, 1


@pytest.mark.parametrize("name", list(CASES))
def test_forward_matches_float64_twin(name):
    kind, cfg, net, params, x, _ = _build(name)
    y = net.forward(x.astype(np.float32))
    want = twin(kind, cfg, x, params)
    k = _depth(kind, cfg, CASES[name][1], params)[0]
    assert y.shape == want.shape and _rel(y, want) <= _tol(k), (name, _rel(y, want))


def _fd(f, t, count, rng):
    """Central differences of f at `count` random coordinates of t (in place)."""
    idx = [np.unravel_index(i, t.shape)
           for i in rng.choice(t.size, min(count, t.size), replace=False)]
    out = []
    for i in idx:
        v = t[i]
        t[i] = v + FD_STEP
        up = f()
        t[i] = v - FD_STEP
        down = f()
        t[i] = v
        out.append((up - down) / (2 * FD_STEP))
    return idx, np.array(out)


@pytest.mark.parametrize("name", list(CASES))
def test_gradients_match_finite_differences_of_the_twin(name):
    kind, cfg, net, params, x, r = _build(name)
    net.forward(x.astype(np.float32), training=True)
    dx = net.backward(r.astype(np.float32), need_dx=True)
    k_y, k_dx = _depth(kind, cfg, CASES[name][1], params)

    def loss():
        return float((twin(kind, cfg, x, params) * r).sum())

    rng = np.random.default_rng(1)
    idx, fd = _fd(loss, x, 60, rng)
    got = np.array([dx[i] for i in idx])
    assert _rel(got, fd) <= _tol(k_dx), (name, "dx", _rel(got, fd))
    n_out = r[0].size
    for j, p in enumerate(params):
        g = net.grad(0, j)
        idx, fd = _fd(loss, p, 30, rng)
        got = np.array([g[i] for i in idx])
        assert _rel(got, fd) <= _tol(2 * n_out), (name, j, _rel(got, fd))


@pytest.mark.parametrize("kind, cfg, want", [
    ("separable_conv2d", dict(filters=4, kernel_size=3, depth_multiplier=2),
     [("depthwise_kernel", (3, 3, 3, 2)), ("pointwise_kernel", (1, 1, 6, 4)), ("bias", (4,))]),
    ("separable_conv2d", dict(filters=4, kernel_size=(3, 1), use_bias=False),
     [("depthwise_kernel", (3, 1, 3, 1)), ("pointwise_kernel", (1, 1, 3, 4))]),
    ("max_pooling2d", dict(kernel_size=2), []),
    ("rescaling", dict(scale=2.0), []),
    ("random_affine", dict(rotation=0.1), []),
])
def test_param_names_and_shapes(kind, cfg, want):
    net = _core.Net((6, 6, 3))
    net.add(kind, **cfg)
    assert [(p["name"], tuple(p["shape"])) for p in net.params(0)] == want


@pytest.mark.parametrize("size, k, s, padding", [
    (7, 3, 2, "same"), (8, 3, 2, "same"), (7, 2, 2, "valid"), (5, 3, 1, "same"),
    (9, 4, 3, "same"), (6, 1, 2, "valid")])
def test_pool_output_size_is_the_conv_geometry(size, k, s, padding):
    """One home: pooling's output size is asl_conv_geometry's."""
    out = _core.conv_geometry(size, k, s, padding)[0]
    assert _core.layer_output_shape("max_pooling2d", (size, size, 1), kernel_size=k,
                                    strides=s, padding=padding)[:2] == (out, out)
    assert out == _geometry(size, k, s, padding)[0]


def test_refusals_are_clear():
    with pytest.raises(ValueError, match="smaller than pool_size"):
        _core.layer_output_shape("max_pooling2d", (2, 2, 1), kernel_size=3)
    with pytest.raises(ValueError, match="interpolation"):
        _core.layer_output_shape("resizing", (4, 4, 1), height=2, width=2,
                                 interpolation="bicubic")
    with pytest.raises(ValueError, match="fill_mode"):
        _core.layer_output_shape("random_affine", (4, 4, 1), fill_mode="mirror")
    with pytest.raises(ValueError, match="'activation' layer for the others"):
        _core.layer_output_shape("conv2d", (4, 4, 1), filters=2, activation="tanh")
    net = _core.Net((4, 4, 2))
    net.add("random_flip", mode="horizontal", seed=1)
    net.forward(np.zeros((1, 4, 4, 2), np.float32), training=True)
    with pytest.raises(_core.CoreError, match="random_flip has no gradient"):
        net.backward(np.zeros((1, 4, 4, 2), np.float32), need_dx=True)
