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


def quantize_weights(w, channels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel symmetric int8 of a Keras kernel: (wq as float64, sw float32).
    The output channel is the innermost index of the flattened kernel (``channels`` of
    them: a depthwise kernel's (in, multiplier) pair, ``in * multiplier``)."""
    w = np.asarray(w, np.float32)
    flat = w.reshape(-1, channels or w.shape[-1])
    m = np.abs(flat).max(axis=0)
    sw = np.where(m > 0, m / np.float32(127), np.float32(1)).astype(np.float32)
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
