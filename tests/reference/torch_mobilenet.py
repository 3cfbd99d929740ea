"""MobileNet v1 (Keras layer sequence) in PyTorch float64, TRAINING mode: an independent
reference for the gradients of the C core.

Weights are a dict of Keras layer names -> lists of arrays in Keras layouts (Conv2D kernel
HWIO, DepthwiseConv2D (kh, kw, cin, multiplier), BN gamma, beta, moving_mean,
moving_variance), as returned by :func:`random_weights`.  Internally everything is NCHW
torch: kernels are permuted to (out, in/groups, kh, kw), depthwise convolutions are
``F.conv2d(groups=cin)`` whose output channel c * multiplier + m is Keras's, TF 'same'
padding is an explicit ``F.pad``, batch norm is ``F.batch_norm(training=True)`` (batch
statistics, biased variance for normalisation) and the moving statistics are updated as
Keras 3 does: moving * momentum + batch_stat * (1 - momentum) with the BIASED batch variance
(torch's own running_var would use the unbiased one, so it is computed here explicitly).

Loss: Keras categorical cross-entropy, -sum(y * log(clip(p, 1e-7, 1 - 1e-7))), batch mean.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

BLOCK_STRIDES = (1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)
POINTWISE_FILTERS = (64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
CCE_EPS = 1e-7


def random_weights(alpha: float = 0.25, classes: int = 10, seed: int = 0):
    """Random float32 weights with Keras names and layouts; non-trivial BN parameters."""
    rng = np.random.default_rng(seed)

    def kernel(shape, fan_in):
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    def bn(c):
        return [rng.uniform(0.5, 1.5, c).astype(np.float32),     # gamma
                rng.normal(0, 0.3, c).astype(np.float32),        # beta
                rng.normal(0, 0.5, c).astype(np.float32),        # moving_mean
                rng.uniform(0.5, 2.0, c).astype(np.float32)]     # moving_variance

    c = int(32 * alpha)
    w = {"conv1": [kernel((3, 3, 3, c), 27)], "conv1_bn": bn(c)}
    for k, filters in enumerate(POINTWISE_FILTERS, start=1):
        w[f"conv_dw_{k}"] = [kernel((3, 3, c, 1), 9)]
        w[f"conv_dw_{k}_bn"] = bn(c)
        out = int(filters * alpha)
        w[f"conv_pw_{k}"] = [kernel((1, 1, c, out), c)]
        w[f"conv_pw_{k}_bn"] = bn(out)
        c = out
    w["conv_preds"] = [kernel((1, 1, c, classes), c),
                       rng.normal(0, 0.1, classes).astype(np.float32)]
    return w


def _same_pad(size, k, s):
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def _conv(x, kernel_hwio, stride, padding, bias=None):
    kh, kw = kernel_hwio.shape[:2]
    if padding == "same":
        (t, b), (l, r) = _same_pad(x.shape[2], kh, stride), _same_pad(x.shape[3], kw, stride)
        x = F.pad(x, (l, r, t, b))
    return F.conv2d(x, kernel_hwio.permute(3, 2, 0, 1), bias, stride=stride)


def _depthwise(x, kernel, stride, padding):
    kh, kw, c, m = kernel.shape
    if padding == "same":
        (t, b), (l, r) = _same_pad(x.shape[2], kh, stride), _same_pad(x.shape[3], kw, stride)
        x = F.pad(x, (l, r, t, b))
    w = kernel.reshape(kh, kw, c * m).permute(2, 0, 1).unsqueeze(1)   # (c*m, 1, kh, kw)
    return F.conv2d(x, w, stride=stride, groups=c)


def _bn_train(x, params, momentum, epsilon, moving):
    gamma, beta, mm, mv = params
    y = F.batch_norm(x, None, None, gamma, beta, training=True, eps=epsilon)
    with torch.no_grad():
        mean = x.mean(dim=(0, 2, 3))
        var = x.var(dim=(0, 2, 3), unbiased=False)
        moving.append((mm * momentum + mean * (1 - momentum),
                       mv * momentum + var * (1 - momentum)))
    return y


def forward(w, x_nhwc, momentum, epsilon, bn_hook=None):
    """Probabilities (n, classes) and the new moving statistics {bn name: (mean, var)}.

    ``bn_hook(name, t)``, if given, is called with each batch norm's input before it runs
    (and may change that layer's parameters in ``w``)."""
    moving = {}

    def bn(name, t):
        if bn_hook is not None:
            bn_hook(name, t)
        out = []
        y = _bn_train(t, w[name], momentum, epsilon, out)
        moving[name] = out[0]
        return y

    relu6 = lambda t: torch.clamp(t, 0.0, 6.0)   # noqa: E731
    x = x_nhwc.permute(0, 3, 1, 2)
    x = F.pad(x, (0, 1, 0, 1))                                   # conv1_pad ((0,1),(0,1))
    x = relu6(bn("conv1_bn", _conv(x, w["conv1"][0], 2, "valid")))
    for k, s in enumerate(BLOCK_STRIDES, start=1):
        if s == 2:
            x = F.pad(x, (0, 1, 0, 1))                           # conv_pad_k
            x = _depthwise(x, w[f"conv_dw_{k}"][0], 2, "valid")
        else:
            x = _depthwise(x, w[f"conv_dw_{k}"][0], 1, "same")
        x = relu6(bn(f"conv_dw_{k}_bn", x))
        x = relu6(bn(f"conv_pw_{k}_bn", _conv(x, w[f"conv_pw_{k}"][0], 1, "same")))
    x = x.mean(dim=(2, 3), keepdim=True)                         # GAP + reshape (1, 1, C)
    # dropout with rate 0: identity
    kernel, bias = w["conv_preds"]
    logits = _conv(x, kernel, 1, "same", bias).flatten(1)       # conv_preds + reshape
    return torch.softmax(logits, dim=1), moving


def avoid_relu6_kinks(weights, x, epsilon=1e-3, margin=lambda m: 1e-4, seed=0, tries=1000):
    """Weights whose every ReLU6 input is at least ``margin(m)`` away from 0 and 6 for the
    batch ``x`` in training mode (m = n*h*w values per channel of that layer).

    Every batch norm of MobileNet feeds a ReLU6 and, in training mode, its output is
    gamma * xhat + beta with xhat fixed by the layers below; so, layer by layer, each
    channel's beta is redrawn (from the same N(0, 0.3)) until no value is within the margin
    of a kink.  Then float32 and float64 evaluations take the same ReLU6 branches.
    """
    rng = np.random.default_rng(seed)
    w = {name: [np.array(a, np.float32) for a in arrays] for name, arrays in weights.items()}
    wt = {name: [torch.tensor(a.astype(np.float64)) for a in arrays] for name, arrays in w.items()}

    def hook(name, t):
        gamma = wt[name][0]
        scaled = F.batch_norm(t, None, None, gamma, None, training=True, eps=epsilon)
        m = t.shape[0] * t.shape[2] * t.shape[3]
        delta = margin(m)
        beta = w[name][1]
        for c in range(t.shape[1]):
            v = scaled[:, c].numpy()
            lo, hi = v.min(), v.max()
            for _ in range(tries):
                z = v + np.float64(beta[c])
                if (np.abs(z) >= delta).all() and (np.abs(z - 6) >= delta).all():
                    break
                beta[c] = np.float32(rng.normal(0, 0.3))
            else:
                raise RuntimeError(f"{name} channel {c}: no kink-free beta in {tries} draws "
                                   f"(values in [{lo:.3g}, {hi:.3g}])")
        wt[name][1] = torch.tensor(beta.astype(np.float64))

    with torch.no_grad():
        forward(wt, torch.tensor(np.asarray(x, np.float64)), 0.99, epsilon, bn_hook=hook)
    return w


def loss_and_grads(weights, x, y_true, momentum=0.99, epsilon=1e-3):
    """One training-mode pass in float64.

    Returns dict(loss, probs, grads={name: [Keras-layout arrays, None for statistics]},
    moving={bn name: (mean, var)}).  ``momentum`` and ``epsilon`` are used as given (pass
    the float32-rounded values to mirror a float32 implementation).
    """
    w = {name: [torch.tensor(np.asarray(a, np.float64), requires_grad=(j < 2 or "bn" not in name))
                for j, a in enumerate(arrays)] for name, arrays in weights.items()}
    xt = torch.tensor(np.asarray(x, np.float64))
    yt = torch.tensor(np.asarray(y_true, np.float64))
    probs, moving = forward(w, xt, momentum, epsilon)
    clipped = torch.clamp(probs, CCE_EPS, 1 - CCE_EPS)
    loss = -(yt * torch.log(clipped)).sum(dim=1).mean()
    loss.backward()
    grads = {name: [t.grad.numpy().copy() if t.grad is not None else None for t in ts]
             for name, ts in w.items()}
    return dict(loss=float(loss.detach()), probs=probs.detach().numpy(), grads=grads,
                moving={k: (m.numpy(), v.numpy()) for k, (m, v) in moving.items()})
