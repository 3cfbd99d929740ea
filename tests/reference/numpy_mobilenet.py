"""Pure-NumPy float64 MobileNet v1 forward pass: the slow, independent twin of the C core.

It follows Keras's ``MobileNet`` layer by layer (inference mode) and takes weights as a dict
of Keras layer names -> weight lists in Keras layouts, as returned by
``aslnet.pretrained.mobilenet_v1_weights`` or :func:`random_weights`. Width (alpha), input
size, depth multiplier and number of classes all follow from the weights and the input.

Layer sequence: ``conv1_pad`` ZeroPadding2D((0,1),(0,1)) -> ``conv1`` 3x3 stride 2 'valid'
-> ``conv1_bn`` -> ``conv1_relu`` (ReLU6); 13 blocks ``k``: [``conv_pad_k`` ZeroPadding2D
((0,1),(0,1)) if stride 2] -> ``conv_dw_k`` 3x3 depthwise ('valid' if stride 2, else 'same')
-> BN -> ReLU6 -> ``conv_pw_k`` 1x1 -> BN -> ReLU6; global average pooling (the embedding);
``conv_preds`` 1x1 convolution with bias (the logits, before softmax).

Constants are restated here rather than imported from ``aslnet`` to keep the twin independent.
"""

from __future__ import annotations

import numpy as np

from tests.reference.numpy_ops import same_padding

BN_EPSILON = 1e-3
BLOCK_STRIDES = (1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)
POINTWISE_FILTERS = (64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)


def zero_pad(x: np.ndarray, top_bottom: tuple[int, int], left_right: tuple[int, int]) -> np.ndarray:
    """ZeroPadding2D on an NHWC batch."""
    return np.pad(x, ((0, 0), top_bottom, left_right, (0, 0)))


def _same_pad(x: np.ndarray, kh: int, kw: int, stride: int) -> np.ndarray:
    """TF/Keras 'same' padding (the references' one rule, numpy_ops.same_padding)."""
    return zero_pad(x, same_padding(x.shape[1], kh, stride), same_padding(x.shape[2], kw, stride))


def _taps(x: np.ndarray, kh: int, kw: int, stride: int):
    """For each kernel tap (i, j), the input pixels it multiplies: an (N, Ho, Wo, C) view."""
    ho = (x.shape[1] - kh) // stride + 1
    wo = (x.shape[2] - kw) // stride + 1
    for i in range(kh):
        for j in range(kw):
            yield i, j, x[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]


def conv2d(x: np.ndarray, kernel: np.ndarray, stride: int = 1, padding: str = "valid",
           bias: np.ndarray | None = None) -> np.ndarray:
    """Conv2D, NHWC input, Keras kernel (kh, kw, in, out): the sum over taps of x_tap @ W[i, j]."""
    kh, kw = kernel.shape[:2]
    if padding == "same":
        x = _same_pad(x, kh, kw, stride)
    out = sum(tap @ kernel[i, j] for i, j, tap in _taps(x, kh, kw, stride))
    return out if bias is None else out + bias


def depthwise_conv2d(x: np.ndarray, kernel: np.ndarray, stride: int = 1,
                     padding: str = "valid") -> np.ndarray:
    """DepthwiseConv2D, Keras kernel (kh, kw, C, M); output channel c*M + m."""
    kh, kw, c, m = kernel.shape
    if padding == "same":
        x = _same_pad(x, kh, kw, stride)
    out = sum(tap[..., None] * kernel[i, j] for i, j, tap in _taps(x, kh, kw, stride))
    return out.reshape(*out.shape[:3], c * m)


def batch_norm(x: np.ndarray, gamma, beta, mean, variance,
               epsilon: float = BN_EPSILON) -> np.ndarray:
    """BatchNormalization in inference mode (moving statistics)."""
    return (x - mean) / np.sqrt(variance + epsilon) * gamma + beta


def relu6(x: np.ndarray) -> np.ndarray:
    """ReLU capped at 6."""
    return np.clip(x, 0.0, 6.0)


def mobilenet_v1(weights: dict[str, list[np.ndarray]], images: np.ndarray,
                 trace: dict[str, np.ndarray] | None = None):
    """Run MobileNet v1 on ``images`` (H, W, 3) or (N, H, W, 3), preprocessed to [-1, 1].

    Returns ``(embedding, logits)`` in float64 with the batch axis as given; ``logits`` is
    None when ``weights`` has no ``conv_preds``. If ``trace`` is a dict, it receives every
    layer's output (NHWC, batched) under its Keras layer name.
    """
    w = {name: [np.asarray(a, np.float64) for a in arrays] for name, arrays in weights.items()}
    x = np.asarray(images, np.float64)
    single = x.ndim == 3
    if single:
        x = x[None]

    def record(name, value):
        if trace is not None:
            trace[name] = value
        return value

    x = record("conv1_pad", zero_pad(x, (0, 1), (0, 1)))
    x = record("conv1", conv2d(x, w["conv1"][0], stride=2))
    x = record("conv1_bn", batch_norm(x, *w["conv1_bn"]))
    x = record("conv1_relu", relu6(x))
    for k, stride in enumerate(BLOCK_STRIDES, start=1):
        if stride == 1:
            x = record(f"conv_dw_{k}", depthwise_conv2d(x, w[f"conv_dw_{k}"][0], 1, "same"))
        else:
            x = record(f"conv_pad_{k}", zero_pad(x, (0, 1), (0, 1)))
            x = record(f"conv_dw_{k}", depthwise_conv2d(x, w[f"conv_dw_{k}"][0], stride, "valid"))
        x = record(f"conv_dw_{k}_bn", batch_norm(x, *w[f"conv_dw_{k}_bn"]))
        x = record(f"conv_dw_{k}_relu", relu6(x))
        x = record(f"conv_pw_{k}", conv2d(x, w[f"conv_pw_{k}"][0]))
        x = record(f"conv_pw_{k}_bn", batch_norm(x, *w[f"conv_pw_{k}_bn"]))
        x = record(f"conv_pw_{k}_relu", relu6(x))
    pooled = record("global_average_pooling2d", x.mean(axis=(1, 2), keepdims=True))
    embedding = pooled[:, 0, 0]
    logits = None
    if "conv_preds" in w:
        kernel, bias = w["conv_preds"]
        logits = record("conv_preds", conv2d(pooled, kernel, bias=bias))[:, 0, 0]
    if single:
        embedding = embedding[0]
        logits = None if logits is None else logits[0]
    return embedding, logits


def random_weights(alpha: float = 0.25, classes: int = 10, depth_multiplier: int = 1,
                   seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Random float32 MobileNet v1 weights with Keras names, shapes and channel rule int(f*alpha).

    Kernels are He-scaled and BN statistics are random but plausible, so activations stay
    in a useful range through all 13 blocks.
    """
    rng = np.random.default_rng(seed)

    def kernel(shape, fan_in):
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    def bn(c):
        gamma, beta = rng.uniform(0.5, 1.5, c), rng.normal(0, 0.1, c)
        mean, variance = rng.normal(0, 0.1, c), rng.uniform(0.5, 1.5, c)
        return [a.astype(np.float32) for a in (gamma, beta, mean, variance)]

    c = int(32 * alpha)
    w = {"conv1": [kernel((3, 3, 3, c), 27)], "conv1_bn": bn(c)}
    for k, filters in enumerate(POINTWISE_FILTERS, start=1):
        w[f"conv_dw_{k}"] = [kernel((3, 3, c, depth_multiplier), 9)]
        w[f"conv_dw_{k}_bn"] = bn(c * depth_multiplier)
        out = int(filters * alpha)
        w[f"conv_pw_{k}"] = [kernel((1, 1, c * depth_multiplier, out), c * depth_multiplier)]
        w[f"conv_pw_{k}_bn"] = bn(out)
        c = out
    w["conv_preds"] = [kernel((1, 1, c, classes), c),
                       rng.normal(0, 0.1, classes).astype(np.float32)]
    return w
