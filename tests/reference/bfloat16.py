"""NumPy emulation of a bfloat16 inference pass of MobileNet v1: the twin of aslnet's
``mixed_bfloat16`` policy, independent of the C core.

What the policy promises (``aslnet.mixed_precision``), restated as arithmetic:
each convolution group (conv -> frozen batch norm -> ReLU6) computes
``relu6(bf16(x) * bf16(w') + b')`` with the batch norm folded in float32
(``s = f32(gamma / sqrt(var + eps))``, ``w' = f32(w * s)``,
``b' = f32((bias - mean) * s + beta)``), products accumulated exactly here (float64) and in
float32 by the core; the group's output is rounded to bfloat16 when the next group reads
it, which the next group's ``bf16(x)`` does. The last group's output stays unrounded.
"""

from __future__ import annotations

import numpy as np

from tests.reference.numpy_mobilenet import (
    BLOCK_STRIDES, BN_EPSILON, conv2d, depthwise_conv2d, relu6, zero_pad)


def to_bf16(x) -> np.ndarray:
    """Round float32 values to the nearest bfloat16 (ties to even), returned as float64."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return u.astype(np.uint32).view(np.float32).astype(np.float64)


def fold(kernel, gamma, beta, mean, variance, eps=BN_EPSILON, bias=None):
    """Frozen batch norm folded into a Keras kernel (last axis = output channel) and the
    conv's bias, in float32 as the core does (scale and bias computed in float64, rounded
    once; the kernel scaled in float32)."""
    s = (np.asarray(gamma, np.float64) / np.sqrt(np.asarray(variance, np.float64) + eps))
    s = s.astype(np.float32)
    w = (np.asarray(kernel, np.float32).reshape(-1, s.size) * s).astype(np.float32)
    b0 = 0.0 if bias is None else np.asarray(bias, np.float64)
    b = ((b0 - np.asarray(mean, np.float64)) * s.astype(np.float64) + beta).astype(np.float32)
    return w.reshape(np.shape(kernel)), b


def mobilenet_v1_bf16(weights: dict[str, list[np.ndarray]], images: np.ndarray) -> np.ndarray:
    """Pooled embedding (N, C), float64, of ``images`` (N, H, W, 3) under the bf16 policy."""
    x = np.asarray(images, np.float32)

    def group(x, conv, bn, fn):
        w, b = fold(weights[conv][0], *weights[bn])
        return relu6(fn(to_bf16(x), to_bf16(w)) + b)

    x = group(zero_pad(x, (0, 1), (0, 1)), "conv1", "conv1_bn",
              lambda x, w: conv2d(x, w, stride=2))
    for k, stride in enumerate(BLOCK_STRIDES, start=1):
        if stride == 1:
            x = group(x, f"conv_dw_{k}", f"conv_dw_{k}_bn",
                      lambda x, w: depthwise_conv2d(x, w, 1, "same"))
        else:
            x = group(zero_pad(x, (0, 1), (0, 1)), f"conv_dw_{k}", f"conv_dw_{k}_bn",
                      lambda x, w: depthwise_conv2d(x, w, stride, "valid"))
        x = group(x, f"conv_pw_{k}", f"conv_pw_{k}_bn", lambda x, w: conv2d(x, w))
    return x.mean(axis=(1, 2))
