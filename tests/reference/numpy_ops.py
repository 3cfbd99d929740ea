"""Float64 NumPy forward AND analytic backward of every layer kind of the C core.

This is the "slow twin" of ``csrc/``: each layer kind is a pair of small functions,
``forward(x, params, cfg, training) -> (y, cache)`` and ``backward(dy, cache) -> (dx,
grads)``, written for clarity (micrograd spirit), not speed.  Shapes are NHWC, per-sample
always (h, w, c); dense and pooling outputs are (n, 1, 1, c).  Parameters are lists in
Keras order and layout (Conv2D kernel HWIO, DepthwiseConv2D (kh, kw, cin, multiplier),
Dense (in, units), BN gamma, beta, moving_mean, moving_variance).  ``grads`` has one entry
per parameter: an array for weights, None for statistics (BN moving mean/variance).

``cfg`` is the keyword dict given to ``aslnet._core.Net.add`` (same names and defaults).
Nothing here imports aslnet: the twin must stay independent of what it checks.
"""

from __future__ import annotations

import numpy as np

# ---------------------------------------------------------------- config helpers


def _pair(v, default):
    v = default if v is None else v
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def _zero_pads(v):
    """ZeroPadding2D padding: int, (h, w) or ((top, bottom), (left, right))."""
    if v is None:
        v = 1
    if np.isscalar(v):
        return (int(v),) * 4
    a, b = v
    if np.isscalar(a):
        return int(a), int(a), int(b), int(b)
    return int(a[0]), int(a[1]), int(b[0]), int(b[1])


def same_padding(size: int, k: int, s: int, dilation: int = 1) -> tuple[int, int]:
    """TF 'same' (the TF documentation's formula, restated here, not asked from the
    engine): out = ceil(in / s), total = max((out - 1) * s + keff - in, 0) with the
    dilated kernel keff = (k - 1) * dilation + 1, the smaller half first."""
    keff = (k - 1) * dilation + 1
    out = -(-size // s)
    total = max((out - 1) * s + keff - size, 0)
    return total // 2, total - total // 2


def conv_output_size(size: int, k: int, s: int, padding: str = "valid",
                     dilation: int = 1) -> int | None:
    """Number of windows along one axis, counted by sliding the dilated window over
    the padded input (a different computation from the engine's closed form);
    None where 'valid' leaves no window (the engine refuses that input)."""
    before, after = same_padding(size, k, s, dilation) if padding == "same" else (0, 0)
    keff = (k - 1) * dilation + 1
    starts = range(0, before + size + after - keff + 1, s)
    return len(starts) or None


# ---------------------------------------------------------------- activations


def act_forward(name: str, z: np.ndarray) -> np.ndarray:
    if name in (None, "linear"):
        return z.copy()
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "relu6":
        return np.clip(z, 0.0, 6.0)
    if name == "softmax":  # over the last axis (channels)
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    raise ValueError(f"unknown activation {name!r}")


def act_backward(name: str, z: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """d loss / d z given the pre-activation z, the output y and dy = d loss / d y."""
    if name in (None, "linear"):
        return dy.copy()
    if name == "relu":
        return dy * (z > 0)
    if name == "relu6":
        return dy * ((z > 0) & (z < 6))
    if name == "softmax":  # Jacobian diag(y) - y y^T, row by row
        return y * (dy - (dy * y).sum(axis=-1, keepdims=True))
    raise ValueError(f"unknown activation {name!r}")


# ---------------------------------------------------------------- convolutions


def _pad_for_conv(x, kh, kw, sh, sw, padding):
    if padding == "same":
        (t, b), (l, r) = same_padding(x.shape[1], kh, sh), same_padding(x.shape[2], kw, sw)
    elif padding in (None, "valid"):
        t = b = l = r = 0
    else:
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
    return np.pad(x, ((0, 0), (t, b), (l, r), (0, 0))), (t, l)


def _taps(xp, kh, kw, sh, sw):
    """For each tap (i, j): the window of xp it multiplies, an (N, Ho, Wo, C) strided view."""
    ho = (xp.shape[1] - kh) // sh + 1
    wo = (xp.shape[2] - kw) // sw + 1
    for i in range(kh):
        for j in range(kw):
            yield i, j, (slice(None), slice(i, i + sh * (ho - 1) + 1, sh),
                         slice(j, j + sw * (wo - 1) + 1, sw))


def conv_forward(x, params, cfg, training=False, depthwise=False):
    kernel = params[0]
    kh, kw = kernel.shape[:2]
    sh, sw = _pair(cfg.get("strides"), 1)
    xp, origin = _pad_for_conv(x, kh, kw, sh, sw, cfg.get("padding", "valid"))
    z = 0.0
    for i, j, win in _taps(xp, kh, kw, sh, sw):
        if depthwise:   # out[..., c, m] = x[..., c] * K[i, j, c, m]
            z = z + xp[win][..., None] * kernel[i, j]
        else:
            z = z + xp[win] @ kernel[i, j]
    if depthwise:       # Keras channel order: c * multiplier + m
        z = z.reshape(*z.shape[:3], -1)
    if len(params) > 1:
        z = z + params[1]
    act = cfg.get("activation", "linear")
    y = act_forward(act, z)
    return y, dict(x=x, xp_shape=xp.shape, origin=origin, params=params, cfg=cfg, z=z, y=y,
                   strides=(sh, sw), depthwise=depthwise, act=act)


def conv_backward(dy, cache):
    x, kernel, (sh, sw) = cache["x"], cache["params"][0], cache["strides"]
    kh, kw = kernel.shape[:2]
    dz = act_backward(cache["act"], cache["z"], cache["y"], dy)
    xp = np.zeros(cache["xp_shape"])
    t, l = cache["origin"]
    xp[:, t:t + x.shape[1], l:l + x.shape[2]] = x
    dxp = np.zeros_like(xp)
    dk = np.zeros_like(kernel)
    if cache["depthwise"]:
        dz = dz.reshape(*dz.shape[:3], kernel.shape[2], kernel.shape[3])
    for i, j, win in _taps(xp, kh, kw, sh, sw):
        if cache["depthwise"]:
            dk[i, j] = np.einsum("nhwc,nhwcm->cm", xp[win], dz)
            dxp[win] += (dz * kernel[i, j]).sum(axis=-1)
        else:
            dk[i, j] = np.einsum("nhwc,nhwo->co", xp[win], dz)
            dxp[win] += dz @ kernel[i, j].T
    dx = dxp[:, t:t + x.shape[1], l:l + x.shape[2]]
    grads = [dk]
    if len(cache["params"]) > 1:
        grads.append(dz.reshape(*dz.shape[:3], -1).sum(axis=(0, 1, 2)))
    return dx, grads


# ---------------------------------------------------------------- other layers


def zero_padding_forward(x, params, cfg, training=False):
    t, b, l, r = _zero_pads(cfg.get("padding"))
    return np.pad(x, ((0, 0), (t, b), (l, r), (0, 0))), dict(x=x, t=t, l=l)


def zero_padding_backward(dy, cache):
    x, t, l = cache["x"], cache["t"], cache["l"]
    return dy[:, t:t + x.shape[1], l:l + x.shape[2]].copy(), []


def batch_norm_forward(x, params, cfg, training=False):
    """Training: batch mean and BIASED variance over (n, h, w); the moving statistics are
    updated as Keras does (moving * momentum + batch * (1 - momentum)) and returned in the
    cache as ``new_moving``.  Inference: the moving statistics."""
    gamma, beta, mm, mv = params
    eps = float(np.float32(cfg.get("epsilon", 1e-3)))
    mom = float(np.float32(cfg.get("momentum", 0.99)))
    if training:
        mean = x.mean(axis=(0, 1, 2))
        var = ((x - mean) ** 2).mean(axis=(0, 1, 2))
        new_moving = (mm * mom + mean * (1 - mom), mv * mom + var * (1 - mom))
    else:
        mean, var, new_moving = mm, mv, (mm, mv)
    inv = 1.0 / np.sqrt(var + eps)
    xhat = (x - mean) * inv
    y = gamma * xhat + beta
    return y, dict(xhat=xhat, inv=inv, gamma=gamma, training=training, new_moving=new_moving)


def batch_norm_backward(dy, cache):
    xhat, inv, gamma = cache["xhat"], cache["inv"], cache["gamma"]
    dgamma = (dy * xhat).sum(axis=(0, 1, 2))
    dbeta = dy.sum(axis=(0, 1, 2))
    dxhat = dy * gamma
    if cache["training"]:   # mean and variance depend on x too
        m = dy.shape[0] * dy.shape[1] * dy.shape[2]
        dx = inv / m * (m * dxhat - dxhat.sum(axis=(0, 1, 2))
                        - xhat * (dxhat * xhat).sum(axis=(0, 1, 2)))
    else:
        dx = dxhat * inv
    return dx, [dgamma, dbeta, None, None]


def activation_forward(x, params, cfg, training=False):
    act = cfg.get("activation", "linear")
    y = act_forward(act, x)
    return y, dict(x=x, y=y, act=act)


def activation_backward(dy, cache):
    return act_backward(cache["act"], cache["x"], cache["y"], dy), []


def global_avg_pool_forward(x, params, cfg, training=False):
    return x.mean(axis=(1, 2), keepdims=True), dict(shape=x.shape)


def global_avg_pool_backward(dy, cache):
    n, h, w, c = cache["shape"]
    return np.broadcast_to(dy / (h * w), cache["shape"]).copy(), []


def global_max_pool_forward(x, params, cfg, training=False):
    n, h, w, c = x.shape
    flat = x.reshape(n, h * w, c)
    arg = flat.argmax(axis=1)          # first maximum on ties
    return flat.max(axis=1).reshape(n, 1, 1, c), dict(shape=x.shape, arg=arg)


def global_max_pool_backward(dy, cache):
    n, h, w, c = cache["shape"]
    dx = np.zeros((n, h * w, c))
    nn, cc = np.meshgrid(np.arange(n), np.arange(c), indexing="ij")
    dx[nn, cache["arg"], cc] = dy.reshape(n, c)
    return dx.reshape(cache["shape"]), []


def dropout_forward(x, params, cfg, training=False):
    """Inference (or rate 0): identity.  Training masks are random: not modelled here."""
    if training and cfg.get("rate", 0.0) > 0:
        raise NotImplementedError("dropout in training mode is random; test it statistically")
    return x.copy(), {}


def dropout_backward(dy, cache):
    return dy.copy(), []


def reshape_forward(x, params, cfg, training=False):
    return x.reshape(x.shape[0], *cfg["target_shape"]), dict(shape=x.shape)


def reshape_backward(dy, cache):
    return dy.reshape(cache["shape"]), []


def dense_forward(x, params, cfg, training=False):
    """Dense on the flattened sample (h*w*c features, NHWC order): (n, 1, 1, units)."""
    n = x.shape[0]
    xf = x.reshape(n, -1)
    z = xf @ params[0]
    if len(params) > 1:
        z = z + params[1]
    act = cfg.get("activation", "linear")
    y = act_forward(act, z)
    return y.reshape(n, 1, 1, -1), dict(x=x, xf=xf, z=z, y=y, act=act, params=params)


def dense_backward(dy, cache):
    n = dy.shape[0]
    dz = act_backward(cache["act"], cache["z"], cache["y"], dy.reshape(n, -1))
    grads = [cache["xf"].T @ dz]
    if len(cache["params"]) > 1:
        grads.append(dz.sum(axis=0))
    return (dz @ cache["params"][0].T).reshape(cache["x"].shape), grads


# ---------------------------------------------------------------- dispatch

OPS = {
    "conv2d": (conv_forward, conv_backward),
    "depthwise_conv2d": (lambda x, p, c, t=False: conv_forward(x, p, c, t, depthwise=True),
                         conv_backward),
    "zero_padding2d": (zero_padding_forward, zero_padding_backward),
    "batch_normalization": (batch_norm_forward, batch_norm_backward),
    "activation": (activation_forward, activation_backward),
    "global_average_pooling2d": (global_avg_pool_forward, global_avg_pool_backward),
    "global_max_pooling2d": (global_max_pool_forward, global_max_pool_backward),
    "dropout": (dropout_forward, dropout_backward),
    "reshape": (reshape_forward, reshape_backward),
    "dense": (dense_forward, dense_backward),
}


def forward(kind: str, x, params, cfg: dict, training: bool = False):
    """y, cache = forward of layer ``kind`` in float64."""
    x = np.asarray(x, np.float64)
    params = [np.asarray(p, np.float64) for p in params]
    return OPS[kind][0](x, params, cfg, training)


def backward(kind: str, dy, cache):
    """dx, [grad per parameter (None for statistics)] of layer ``kind`` in float64."""
    return OPS[kind][1](np.asarray(dy, np.float64), cache)


def pre_activation(kind: str, x, params, cfg: dict, training: bool = False):
    """The values a layer's activation sees (to keep test data away from kinks), or None."""
    if kind == "activation":
        return np.asarray(x, np.float64)
    if kind in ("conv2d", "depthwise_conv2d", "dense"):
        return forward(kind, x, params, dict(cfg, activation="linear"), training)[0]
    return None


# ---------------------------------------------------------------- chains with residual adds


def graph_forward(layers, params, x, training: bool = False):
    """Float64 forward of a chain with residual adds, as the C core runs it: ``layers`` is a
    list of (kind, cfg); ``("add", {"source": k})`` adds layer k's output to the previous
    layer's.  ``params[i]``: layer i's parameter list.  Returns (outputs, caches)."""
    outs, caches = [], []
    h = np.asarray(x, np.float64)
    for i, (kind, cfg) in enumerate(layers):
        if kind == "add":
            h, cache = h + outs[cfg["source"]], None
        else:
            h, cache = forward(kind, h, params[i], cfg, training)
        outs.append(h)
        caches.append(cache)
    return outs, caches


def graph_backward(layers, caches, dy):
    """(dx, grads) of graph_forward's chain for the gradient dy of its last output.  The
    gradient reaching a layer's output is the sum of the chain's (from the layer above) and
    of every add that read it; an add passes its gradient to both inputs unchanged."""
    pending = {}
    grads = [None] * len(layers)
    g = np.asarray(dy, np.float64)
    for i in reversed(range(len(layers))):
        g = g + pending.pop(i, 0.0)
        kind, cfg = layers[i]
        if kind == "add":
            pending[cfg["source"]] = pending.get(cfg["source"], 0.0) + g
            grads[i] = []
        else:
            g, grads[i] = backward(kind, g, caches[i])
    return g, grads
