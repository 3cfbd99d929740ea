"""MobileNetV2's architecture as Keras builds it, as data: the one place that says which
layers ``keras.applications.MobileNetV2`` has, in which order, with which arguments.

:func:`layer_table` lists every layer after the ``InputLayer`` (whose name Keras versions
choose differently: ``input_1``, ``input_layer``): name, Keras class, the layers it reads,
its constructor arguments, its weight shapes and its output shape.  A builder creates each
layer from ``kind`` and ``config`` and calls it on ``inputs``; the ImageNet weights
(``aslnet.pretrained.mobilenet_v2_weights``) and the tests use the same table.  Checked
against TensorFlow 2.21 / Keras 3.15 (``tests/test_pretrained_v2.py``): names, classes,
weight shapes, output shapes and 3,538,984 parameters at 1.0/224 with top (2,257,984
without).

The network (Sandler et al. 2018, Table 2): ``Conv1`` 3x3 stride 2, 'same' -> ``bn_Conv1``
-> ``Conv1_relu`` (ReLU6); 17 inverted-residual blocks (:data:`STAGES`), each
[1x1 ``expand`` -> BN -> ReLU6] (not in block 0, named ``expanded_conv_*``) ->
[``pad`` ZeroPadding2D if stride 2] -> 3x3 ``depthwise`` -> BN -> ReLU6 -> 1x1 linear
``project`` -> BN [-> ``add`` of the block's input when stride 1 and the channels agree];
``Conv_1`` 1x1 to 1280 -> ``Conv_1_bn`` -> ``out_relu``; then global average pooling and
the ``predictions`` Dense, or the pooling asked for.  Convolutions have no bias; batch
norms have epsilon 1e-3 and momentum 0.999.

Padding.  The TF-slim graph the ImageNet weights come from pads every convolution "SAME"
(TFLite operators, stride 2 included).  Keras pads ``Conv1`` 'same' (identical), and before
each stride-2 depthwise layer inserts ``ZeroPadding2D(correct_pad(x, 3))`` with a 'valid'
convolution: ((0, 1), (0, 1)) for an even size, ((1, 1), (1, 1)) for an odd one -- exactly
what "SAME" pads for a 3x3 kernel at stride 2 (total ``(ceil(n/2) - 1) * 2 + 3 - n`` = 1
or 2, the smaller half first).  So at any known input size Keras's layout computes what
the TFLite graph computes.  With an unknown size (``input_shape=(None, None, 3)``) Keras
fixes ((0, 1), (0, 1)) at build time, which differs from "SAME" where a feature map turns
out odd at run time (e.g. 200x200: 100 -> 50 -> 25, so ``block_13_pad``); the table
follows Keras there too.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["BN_EPSILON", "BN_MOMENTUM", "STAGES", "Block", "LayerSpec", "make_divisible",
           "correct_pad", "blocks", "layer_table", "bn_layer_names", "count_params"]

BN_EPSILON = 1e-3
BN_MOMENTUM = 0.999

STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
          (6, 160, 3, 2), (6, 320, 1, 1))
"""(expansion t, output channels c, repeats n, stride s of the first repeat) of the seven
bottleneck stages: 17 blocks, ids 0..16."""

FIRST_FILTERS = 32
LAST_FILTERS = 1280


class Block(NamedTuple):
    """One inverted-residual block, with channel counts at a given alpha."""
    block_id: int
    prefix: str            # 'expanded_conv_' for block 0, else 'block_{id}_'
    expansion: int         # t: expanded channels = t * in_channels (block 0: no expand layer)
    in_channels: int
    expanded: int
    out_channels: int
    stride: int
    residual: bool         # block_{id}_add: stride 1 and in_channels == out_channels


class LayerSpec(NamedTuple):
    """One Keras layer: ``kind`` is the Keras class name, ``inputs`` the names of the layers
    it reads (``'input'`` for the model's input), ``config`` its constructor arguments
    (besides ``name``), ``weight_shapes`` its weights in Keras order and ``output_shape``
    its output without the batch axis (None where the input size is unknown)."""
    name: str
    kind: str
    inputs: tuple
    config: dict
    weight_shapes: tuple
    output_shape: tuple


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Keras's ``_make_divisible``: round ``v`` to a multiple of ``divisor``, never more than
    10% below ``v``."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def correct_pad(size: tuple, kernel: int = 3) -> tuple:
    """Keras's ``imagenet_utils.correct_pad`` for a (rows, cols) size (None if unknown)."""
    adjust = (1, 1) if size[0] is None else (1 - size[0] % 2, 1 - size[1] % 2)
    c = kernel // 2
    return ((c - adjust[0], c), (c - adjust[1], c))


def blocks(alpha: float = 1.0) -> list[Block]:
    """The 17 blocks in order, with Keras's channel rule ``make_divisible(c * alpha, 8)``."""
    out, channels, block_id = [], make_divisible(FIRST_FILTERS * alpha), 0
    for t, c, n, s in STAGES:
        filters = make_divisible(int(c * alpha))
        for i in range(n):
            stride = s if i == 0 else 1
            prefix = f"block_{block_id}_" if block_id else "expanded_conv_"
            expanded = t * channels if block_id else channels
            out.append(Block(block_id, prefix, t, channels, expanded, filters, stride,
                             stride == 1 and channels == filters))
            channels, block_id = filters, block_id + 1
    return out


def _conv_out(n, k, stride, padding):
    if n is None:
        return None
    return -(-n // stride) if padding == "same" else (n - k) // stride + 1


def layer_table(alpha: float = 1.0, input_shape: tuple = (224, 224, 3),
                include_top: bool = True, pooling: str | None = None, classes: int = 1000,
                classifier_activation: str | None = "softmax") -> list[LayerSpec]:
    """Keras MobileNetV2's layers after the InputLayer, in ``model.layers`` order.

    ``input_shape`` is (rows, cols, channels); rows/cols may be None (size-agnostic).
    ``pooling`` ('avg', 'max' or None) applies without top, as in Keras.
    """
    rows, cols, channels_in = input_shape
    table: list[LayerSpec] = []
    hw = [rows, cols]
    last = "input"

    def add(name, kind, config=None, weights=(), channels=None, inputs=None):
        nonlocal last
        table.append(LayerSpec(name, kind, inputs or (last,), dict(config or {}),
                               tuple(weights), (hw[0], hw[1], channels)))
        last = name

    def conv(name, filters, cin, kernel=1, stride=1, padding="same"):
        hw[:] = [_conv_out(n, kernel, stride, padding) for n in hw]
        add(name, "Conv2D", dict(filters=filters, kernel_size=(kernel, kernel),
                                 strides=(stride, stride), padding=padding, use_bias=False),
            [(kernel, kernel, cin, filters)], filters)

    def bn(name, c):
        add(name, "BatchNormalization", dict(epsilon=BN_EPSILON, momentum=BN_MOMENTUM),
            [(c,)] * 4, c)

    def relu6(name, c):
        add(name, "ReLU", dict(max_value=6.0), (), c)

    first = make_divisible(FIRST_FILTERS * alpha)
    conv("Conv1", first, channels_in, kernel=3, stride=2)
    bn("bn_Conv1", first)
    relu6("Conv1_relu", first)
    for b in blocks(alpha):
        block_input, p = last, b.prefix
        if b.block_id:
            conv(p + "expand", b.expanded, b.in_channels)
            bn(p + "expand_BN", b.expanded)
            relu6(p + "expand_relu", b.expanded)
        padding = "same"
        if b.stride == 2:
            pads = correct_pad(hw)
            hw[:] = [None if n is None else n + sum(pad) for n, pad in zip(hw, pads)]
            add(p + "pad", "ZeroPadding2D", dict(padding=pads), (), b.expanded)
            padding = "valid"
        hw[:] = [_conv_out(n, 3, b.stride, padding) for n in hw]
        add(p + "depthwise", "DepthwiseConv2D",
            dict(kernel_size=(3, 3), strides=(b.stride, b.stride), padding=padding,
                 use_bias=False), [(3, 3, b.expanded, 1)], b.expanded)
        bn(p + "depthwise_BN", b.expanded)
        relu6(p + "depthwise_relu", b.expanded)
        conv(p + "project", b.out_channels, b.expanded)
        bn(p + "project_BN", b.out_channels)
        if b.residual:
            add(p + "add", "Add", {}, (), b.out_channels, inputs=(block_input, last))
    top = make_divisible(LAST_FILTERS * alpha) if alpha > 1.0 else LAST_FILTERS
    conv("Conv_1", top, blocks(alpha)[-1].out_channels, padding="valid")
    bn("Conv_1_bn", top)
    relu6("out_relu", top)
    if include_top or pooling == "avg":
        table.append(LayerSpec("global_average_pooling2d", "GlobalAveragePooling2D", (last,),
                               {}, (), (top,)))
    elif pooling == "max":
        table.append(LayerSpec("global_max_pooling2d", "GlobalMaxPooling2D", (last,), {}, (),
                               (top,)))
    if include_top:
        table.append(LayerSpec("predictions", "Dense", ("global_average_pooling2d",),
                               dict(units=classes, activation=classifier_activation),
                               ((top, classes), (classes,)), (classes,)))
    return table


def bn_layer_names(alpha: float = 1.0) -> tuple:
    """Names of the 52 BatchNormalization layers, in network order."""
    return tuple(s.name for s in layer_table(alpha, include_top=False)
                 if s.kind == "BatchNormalization")


def count_params(table: list[LayerSpec]) -> int:
    """Total parameters (trainable and not), as Keras's ``count_params``."""
    total = 0
    for spec in table:
        for shape in spec.weight_shapes:
            n = 1
            for d in shape:
                n *= d
            total += n
    return total
