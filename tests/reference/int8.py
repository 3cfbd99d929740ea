"""NumPy emulation of aslnet's int8 inference (``model.quantize("int8")``; csrc/quantize.c),
independent of the C core.

What the int8 path promises, restated as arithmetic, for each fused group
(``[zero padding ->] conv -> frozen batch norm [-> relu/relu6]``):

- the batch norm is folded in float32 (``tests.reference.bfloat16.fold``), then the kernel
  is quantized per output channel, symmetric: ``sw[o] = max|w[..., o]| / 127`` (1 for an
  all-zero channel), ``wq = clip(rint(w / sw[o]), -127, 127)`` (rint: half to even);
- each activation tensor has one scale from its calibrated range ``(lo, hi)``: u8 over
  ``[0, hi]`` (``s = hi / 255``; ``hi / 127`` without VNNI) when ``lo >= 0`` (ReLU
  outputs), else s8 symmetric
  (``s = max(-lo, hi) / 127``); ``quantize(x) = clip(rint(x * f32(1 / s)))``;
- the convolution accumulates ``xq * wq`` exactly (int32 in oneDNN, float64 here: exact,
  the sums stay far below 2^53), then ``y = act(sx * sw[o] * acc + b[o])``; a group whose
  output only feeds the next group stores it requantized, ``clip(rint(y / sy))``; other
  outputs are float32 ``y``.
"""

from __future__ import annotations

import numpy as np

LIMITS = {"u8": (0, 255), "s8": (-128, 127)}


def qparams(lo: float, hi: float, u8_max: int = 255) -> tuple[str, np.float32]:
    """(type, scale) of a tensor whose calibrated range is (lo, hi); u8_max: 127 on CPUs
    without VNNI (the core keeps u8 values in [0, 127] there)."""
    lo, hi = np.float32(lo), np.float32(hi)
    if lo >= 0:
        t, s = "u8", np.float32(hi / np.float32(u8_max))
    else:
        t, s = "s8", np.float32(max(-lo, hi) / np.float32(127))
    return t, (s if s > 0 else np.float32(1))


def quantize(x, t: str, s) -> np.ndarray:
    """float32 -> integers (as float64) of type t with scale s."""
    inv = np.float32(1) / np.float32(s)
    q = np.rint(np.asarray(x, np.float32) * inv)
    return np.clip(q, *LIMITS[t]).astype(np.float64)


QW_EXACT = 1e-9


def quantize_weights(w, channels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel symmetric int8 of a Keras kernel: (wq as float64, sw float32).
    The output channel is the innermost index of the flattened kernel (``channels`` of
    them: a depthwise kernel's (in, multiplier) pair, ``in * multiplier``).  The step:
    max|w| / k, k = 127 unless a coarser k (126 down to 64) has less than half the squared
    rounding error of the best so far; an exact fit (<= QW_EXACT max|w|^2 per weight)
    stops the search (csrc/quantize.c)."""
    w = np.asarray(w, np.float32)
    flat = w.reshape(-1, channels or w.shape[-1])
    m = np.abs(flat).max(axis=0)
    pos = m > 0
    exact = QW_EXACT * m.astype(np.float64) ** 2 * flat.shape[0]

    def err(step):
        t = np.clip(flat / step, -127, 127)
        return ((flat.astype(np.float64) - np.rint(t).astype(np.float64)
                 * step.astype(np.float64)) ** 2).sum(axis=0)

    best = np.where(pos, m / np.float32(127), np.float32(1)).astype(np.float32)
    best_e = err(best)
    for k in range(126, 63, -1):
        step = np.where(pos, m / np.float32(k), np.float32(1)).astype(np.float32)
        e = err(step)
        better = pos & (best_e > exact) & (e < 0.5 * best_e)
        best = np.where(better, step, best)
        best_e = np.where(better, e, best_e)
    sw = best.astype(np.float32)
    wq = np.clip(np.rint(flat / sw), -127, 127).astype(np.float64)
    return wq.reshape(w.shape), sw


def group(xq, sx, wq, sw, b, conv, act=None, out=None):
    """One group on quantized input xq (scale sx): ``conv(xq, wq)`` is the exact integer
    accumulation (any float64 convolution of integer arrays); act None, "relu" or "relu6";
    out None (float output) or (type, scale) to requantize."""
    acc = conv(np.asarray(xq, np.float64), np.asarray(wq, np.float64))
    y = acc * (np.float64(sx) * np.asarray(sw, np.float64)) + np.asarray(b, np.float64)
    if act == "relu":
        y = np.maximum(y, 0)
    elif act == "relu6":
        y = np.clip(y, 0, 6)
    if out is None:
        return y
    t, s = out
    return np.clip(np.rint(y / np.float64(s)), *LIMITS[t])


def adjust_weights(wq, sw):
    """oneDNN's s8-source kernels without VNNI halve the int8 weights (its reorder's
    ``scale_adjust`` 0.5, rounded half to even) and double their scales."""
    return np.rint(np.asarray(wq) * 0.5), np.asarray(sw, np.float32) * np.float32(2)


def mobilenet_v1_groups():
    """MobileNet v1's int8 groups in order: (first layer, conv, zero padding or None,
    conv function, last layer) by Keras layer names."""
    from tests.reference.numpy_mobilenet import BLOCK_STRIDES, conv2d, depthwise_conv2d
    plan = [("conv1_pad", "conv1", (0, 1), lambda x, w: conv2d(x, w, stride=2),
             "conv1_relu")]
    for k, stride in enumerate(BLOCK_STRIDES, start=1):
        if stride == 1:
            plan.append((f"conv_dw_{k}", f"conv_dw_{k}", None,
                         lambda x, w: depthwise_conv2d(x, w, 1, "same"), f"conv_dw_{k}_relu"))
        else:
            plan.append((f"conv_pad_{k}", f"conv_dw_{k}", (0, 1),
                         lambda x, w, s=stride: depthwise_conv2d(x, w, s, "valid"),
                         f"conv_dw_{k}_relu"))
        plan.append((f"conv_pw_{k}", f"conv_pw_{k}", None, lambda x, w: conv2d(x, w),
                     f"conv_pw_{k}_relu"))
    return plan


def mobilenet_v1_group(weights, xq, t, sx, conv, pad, fn, out=None, vnni=True):
    """One MobileNet v1 group (conv -> folded batch norm -> relu6) on integers xq of
    type t and scale sx: float64 output, or requantized to out = (type, scale).
    vnni=False: an s8 source's weights are halved (``adjust_weights``), as oneDNN does."""
    from tests.reference.bfloat16 import fold
    from tests.reference.numpy_mobilenet import zero_pad
    if pad:
        xq = zero_pad(xq, pad, pad)
    w, b = fold(weights[conv][0], *weights[conv + "_bn"])
    wq, sw = quantize_weights(w, len(b))
    if not vnni and t == "s8":
        wq, sw = adjust_weights(wq, sw)
    return group(xq, sx, wq, sw, b, fn, "relu6", out)

