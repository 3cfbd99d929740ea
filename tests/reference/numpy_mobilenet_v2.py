"""Pure-NumPy float64 MobileNetV2 forward pass: the slow, independent twin for v2.

It computes what the TF-slim graph of the ImageNet weights computes (every convolution
padded TF "SAME"), layer by layer in inference mode, from a dict of Keras layer names ->
weight lists in Keras layouts (``aslnet.pretrained.mobilenet_v2_weights`` or
:func:`random_weights`).  Keras's ``MobileNetV2`` pads ``Conv1`` 'same' and puts an explicit
``ZeroPadding2D(correct_pad)`` before each stride-2 depthwise layer, which at any known input
size pads exactly as "SAME" does; the twin keeps "SAME" so that it is a second opinion on
that claim, not a copy of it.  Width (alpha), input size and number of classes follow from
the weights and the input.

Layer sequence: ``Conv1`` 3x3 stride 2 -> ``bn_Conv1`` -> ReLU6; 17 inverted-residual blocks
(prefix ``expanded_conv_`` for block 0, ``block_{k}_`` after): [``expand`` 1x1 -> BN -> ReLU6,
not in block 0] -> ``depthwise`` 3x3 (stride 1 or 2) -> BN -> ReLU6 -> ``project`` 1x1 -> BN
[-> ``add`` the block's input, when stride 1 and the channel counts agree]; ``Conv_1`` 1x1 ->
``Conv_1_bn`` -> ReLU6 (``out_relu``); global average pooling (the embedding); the
``predictions`` Dense (the logits, before softmax).

Constants are restated here rather than imported from ``aslnet`` to keep the twin independent.
"""

from __future__ import annotations

import numpy as np

from tests.reference.numpy_mobilenet import batch_norm, conv2d, depthwise_conv2d, relu6

# (expansion, output channels, repeats, first stride) per stage: Sandler et al. 2018, Table 2
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
          (6, 160, 3, 2), (6, 320, 1, 1))
BLOCK_STRIDES = tuple(s if i == 0 else 1 for _, _, n, s in STAGES for i in range(n))


def _prefix(k: int) -> str:
    return f"block_{k}_" if k else "expanded_conv_"


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def mobilenet_v2(weights: dict[str, list[np.ndarray]], images: np.ndarray,
                 trace: dict[str, np.ndarray] | None = None, feed=None):
    """Run MobileNetV2 on ``images`` (H, W, 3) or (N, H, W, 3), preprocessed to [-1, 1].

    Returns ``(embedding, logits)`` in float64 with the batch axis as given; ``logits`` is
    None when ``weights`` has no ``predictions``.  If ``trace`` is a dict, it receives every
    layer's output (NHWC, batched) under its Keras layer name (the pads excepted: "SAME"
    padding happens inside the convolution here).

    ``feed(name, value)``, if given, is called with the output of each fused unit -- what one
    TFLite operator computes: conv + BN [+ ReLU6] (named by its last Keras layer), ``add``,
    the pooling -- and the network continues from what it returns.  Returning another
    implementation's value for that unit checks the twin one operator at a time.
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

    def unit(name, value):
        record(name, value)
        return value if feed is None else np.asarray(feed(name, value), np.float64)

    def conv_bn(name, bn_name, relu_name, x, stride=1, depthwise=False):
        if depthwise:
            x = record(name, depthwise_conv2d(x, w[name][0], stride, "same"))
        else:
            x = record(name, conv2d(x, w[name][0], stride, "same"))
        if relu_name is None:
            return unit(bn_name, batch_norm(x, *w[bn_name]))
        x = record(bn_name, batch_norm(x, *w[bn_name]))
        return unit(relu_name, relu6(x))

    x = conv_bn("Conv1", "bn_Conv1", "Conv1_relu", x, stride=2)
    for k, stride in enumerate(BLOCK_STRIDES):
        p, block_input = _prefix(k), x
        if k:
            x = conv_bn(p + "expand", p + "expand_BN", p + "expand_relu", x)
        x = conv_bn(p + "depthwise", p + "depthwise_BN", p + "depthwise_relu", x, stride,
                    depthwise=True)
        x = conv_bn(p + "project", p + "project_BN", None, x)
        if stride == 1 and block_input.shape[-1] == x.shape[-1]:
            x = unit(p + "add", block_input + x)
    x = conv_bn("Conv_1", "Conv_1_bn", "out_relu", x)
    embedding = unit("global_average_pooling2d", x.mean(axis=(1, 2)))
    logits = None
    if "predictions" in w:
        kernel, bias = w["predictions"]
        logits = record("predictions", embedding @ kernel + bias)
    if single:
        embedding = embedding[0]
        logits = None if logits is None else logits[0]
    return embedding, logits


def _make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def random_weights(alpha: float = 0.35, classes: int = 10, seed: int = 0,
                   ) -> dict[str, list[np.ndarray]]:
    """Random float32 MobileNetV2 weights with Keras's names, shapes and channel rule
    (multiples of 8 near c * alpha; 1280 last channels up to alpha 1).  Kernels are
    He-scaled, BN statistics random but plausible, so activations stay in a useful range."""
    rng = np.random.default_rng(seed)

    def kernel(shape, fan_in):
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    def bn(c):
        gamma, beta = rng.uniform(0.5, 1.5, c), rng.normal(0, 0.1, c)
        mean, variance = rng.normal(0, 0.1, c), rng.uniform(0.5, 1.5, c)
        return [a.astype(np.float32) for a in (gamma, beta, mean, variance)]

    c = _make_divisible(32 * alpha)
    w = {"Conv1": [kernel((3, 3, 3, c), 27)], "bn_Conv1": bn(c)}
    k = 0
    for t, filters, n, _ in STAGES:
        out = _make_divisible(int(filters * alpha))
        for _ in range(n):
            p, e = _prefix(k), (t * c if k else c)
            if k:
                w[p + "expand"], w[p + "expand_BN"] = [kernel((1, 1, c, e), c)], bn(e)
            w[p + "depthwise"], w[p + "depthwise_BN"] = [kernel((3, 3, e, 1), 9)], bn(e)
            w[p + "project"], w[p + "project_BN"] = [kernel((1, 1, e, out), e)], bn(out)
            c, k = out, k + 1
    last = _make_divisible(1280 * alpha) if alpha > 1.0 else 1280
    w["Conv_1"], w["Conv_1_bn"] = [kernel((1, 1, c, last), c)], bn(last)
    w["predictions"] = [kernel((last, classes), last),
                        rng.normal(0, 0.1, classes).astype(np.float32)]
    return w
