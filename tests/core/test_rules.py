"""Rules with one home in the C core, and where another side must still know them,
a check that both agree over a grid of cases.

- Convolution geometry (output size, TF 'same' padding before/after, dilation):
  ``asl_conv_geometry`` (csrc/conv2d.c), asked as ``_core.conv_geometry``; the
  layers' output shapes come from ``_core.layer_output_shape`` (the layer's own
  init).  The oracle is ``tests/reference/numpy_ops`` (the TF formula for the
  padding, and window counting for the sizes), which imports nothing from aslnet.
- Defaults: a layer made with Keras's defaults in ``aslnet.layers`` and the C kind
  added with only the required arguments have the same weights and output shape.
- The softmax output train_step fuses with the cross-entropy: ``Net.softmax_output``
  says what ``train_step`` does.

Shapes are integers: every comparison here is exact.
"""
import numpy as np
import pytest

from aslnet import _core
from aslnet import layers as L
from tests.reference.numpy_ops import conv_output_size, same_padding

SIZES = range(1, 41)
KERNELS = range(1, 8)
STRIDES = range(1, 4)
DILATIONS = range(1, 4)
PADDINGS = ("valid", "same")


def test_conv_geometry_matches_the_reference_over_the_grid():
    """sizes 1..40 x kernels 1..7 x strides 1..3 x dilations 1..3 x both paddings."""
    checked = refused = 0
    for size in SIZES:
        for k in KERNELS:
            for s in STRIDES:
                for d in DILATIONS:
                    for padding in PADDINGS:
                        want = conv_output_size(size, k, s, padding, d)
                        if want is None:
                            with pytest.raises(ValueError, match="smaller than the kernel"):
                                _core.conv_geometry(size, k, s, padding, d)
                            refused += 1
                            continue
                        pads = same_padding(size, k, s, d) if padding == "same" else (0, 0)
                        got = _core.conv_geometry(size, k, s, padding=padding, dilation=d)
                        assert got == (want, *pads), (size, k, s, d, padding)
                        checked += 1
    assert checked > 4000 and refused > 100          # both branches exercised


@pytest.mark.parametrize("bad", [(0, 3, 1), (5, 0, 1), (5, 3, 0), (5, 3, 1, "valid", 0)])
def test_conv_geometry_refuses_sizes_below_one(bad):
    with pytest.raises(ValueError, match="must be >= 1"):
        _core.conv_geometry(*bad)
    with pytest.raises(ValueError, match="padding must be 'valid' or 'same'"):
        _core.conv_geometry(5, 3, 1, "causal")


@pytest.mark.parametrize("kind", ["conv2d", "depthwise_conv2d"])
def test_convolution_layer_shapes_match_the_reference_over_the_grid(kind):
    """The engine's layer shapes (what Net.add builds, what aslnet.layers asks) on
    non-square inputs (h, 41 - h): each axis is the reference's size."""
    extra = dict(filters=5) if kind == "conv2d" else dict(depth_multiplier=2)
    for h in SIZES:
        w = 41 - h
        for k in KERNELS:
            for s in STRIDES:
                for padding in PADDINGS:
                    cfg = dict(kernel_size=(k, 8 - k), strides=(s, 4 - s), padding=padding,
                               **extra)
                    oh = conv_output_size(h, k, s, padding)
                    ow = conv_output_size(w, 8 - k, 4 - s, padding)
                    if oh is None or ow is None:
                        with pytest.raises(ValueError, match="smaller than kernel"):
                            _core.layer_output_shape(kind, (h, w, 3), **cfg)
                        continue
                    want = (oh, ow, 5 if kind == "conv2d" else 6)
                    assert _core.layer_output_shape(kind, (h, w, 3), **cfg) == want, cfg


@pytest.mark.parametrize("h, w", [(1, 1), (7, 8), (13, 5), (40, 39)])
@pytest.mark.parametrize("k, s", [(1, 1), (3, 2), (5, 3), (7, 1)])
@pytest.mark.parametrize("padding", PADDINGS)
def test_aslnet_layers_shapes_match_the_reference(h, w, k, s, padding):
    """aslnet.layers (Keras shapes) on the reference: Conv2D, DepthwiseConv2D,
    ZeroPadding2D, the global poolings."""
    oh, ow = conv_output_size(h, k, s, padding), conv_output_size(w, k, s, padding)
    for layer, c in ((L.Conv2D(4, k, strides=s, padding=padding), 4),
                     (L.DepthwiseConv2D(k, strides=s, padding=padding, depth_multiplier=3), 9)):
        x = L.Input((h, w, 3))
        if oh is None or ow is None:
            with pytest.raises(ValueError, match=f"Layer '{layer.name}'.*smaller than kernel"):
                layer(x)
        else:
            assert layer(x).shape == (None, oh, ow, c)
    pad = ((k - 1, s), (s - 1, k))
    assert L.ZeroPadding2D(pad)(L.Input((h, w, 3))).shape == (None, h + k - 1 + s,
                                                              w + s - 1 + k, 3)
    assert L.GlobalAveragePooling2D()(L.Input((h, w, 3))).shape == (None, 3)
    assert L.GlobalMaxPooling2D(keepdims=True)(L.Input((h, w, 3))).shape == (None, 1, 1, 3)


# Keras's defaults in aslnet.layers and the C kind's defaults: the layer made with only
# its required arguments, and the C kind added with only the required ones.
DEFAULTS = [
    (lambda: L.Conv2D(4, 3), "conv2d", dict(filters=4, kernel_size=3)),
    (lambda: L.DepthwiseConv2D(3), "depthwise_conv2d", dict(kernel_size=3)),
    (lambda: L.Dense(4), "dense", dict(units=4)),
    (lambda: L.BatchNormalization(), "batch_normalization", {}),
    (lambda: L.ZeroPadding2D(), "zero_padding2d", {}),
    (lambda: L.GlobalAveragePooling2D(keepdims=True), "global_average_pooling2d", {}),
]


@pytest.mark.parametrize("make, kind, required", DEFAULTS, ids=[d[1] for d in DEFAULTS])
def test_python_and_c_defaults_agree(make, kind, required):
    layer = make()
    shape = (1, 1, 6) if kind == "dense" else (9, 8, 6)
    out = layer(L.Input(shape)).shape[1:]
    net = _core.Net(shape)
    net.add(kind, **required)
    assert [(p["name"], tuple(p["shape"])) for p in net.params(0)] == \
        [(v.name.rsplit("/", 1)[-1][:-2], v.shape) for v in layer.weights]
    assert net.output_shape(0) == L.core_shape(out)


@pytest.mark.parametrize("layers, want", [
    ([("dense", dict(units=3, activation="softmax"))], 0),
    ([("dense", dict(units=3, activation="softmax")), ("reshape", dict(target_shape=(1, 1, 3)))],
     0),
    ([("dense", dict(units=3)), ("activation", dict(activation="softmax"))], 1),
    ([("dense", dict(units=3, activation="softmax")), ("dropout", dict(rate=0.5))], None),
    ([("dense", dict(units=3, activation="relu"))], None),
    ([("conv2d", dict(filters=3, activation="softmax"))], None),    # (2, 2, 3) per sample
])
def test_softmax_output_is_what_train_step_fuses(layers, want):
    """Net.softmax_output (the rule models ask) says whether train_step trains."""
    shape = (2, 2, 4) if layers[0][0] == "conv2d" else (1, 1, 4)
    net = _core.Net(shape)
    for kind, cfg in layers:
        net.add(kind, **cfg)
    net.set_optimizer("sgd", learning_rate=0.1)
    assert net.softmax_output() == want
    x = np.random.default_rng(0).normal(size=(2, *shape)).astype(np.float32)
    y = np.zeros((2, *net.output_shape(-1)), np.float32)
    y[..., 0] = 1
    if want is None:
        with pytest.raises(_core.CoreError, match="softmax output"):
            net.train_step(x, y)
    else:
        loss, _ = net.train_step(x, y)
        assert np.isfinite(loss)


@pytest.mark.parametrize("size, ok", [(224, True), (112, True), (2, True), (225, False),
                                      (7, False)])
def test_pretrained_import_checks_tflite_same_is_keras_s_padding(size, ok):
    """TFLite's 'SAME' at stride 2 is Keras's ZeroPadding2D((0, 1)) + 'valid' only where
    the engine's 'same' rule pads (0, 1): even sizes."""
    from aslnet._tflite import Operator, Tensor, TFLiteModel
    from aslnet.pretrained import _check_keras_padding
    model = TFLiteModel("m.tflite", [Operator("CONV_2D", (0,), (1,))],
                        [Tensor(0, "x", (1, size, size, 3), "FLOAT32", None, None)], (0,), (1,))
    if ok:
        _check_keras_padding(model, 0, 2, (3, 3))
    else:
        with pytest.raises(ValueError, match="not Keras's ZeroPadding2D"):
            _check_keras_padding(model, 0, 2, (3, 3))
    _check_keras_padding(model, 0, 1, (3, 3))       # stride 1: 'same' on both sides


def test_categorical_crossentropy_is_train_step_s_rule():
    """_core.categorical_crossentropy (for Python's evaluate) against (a) a float64 NumPy
    twin of -sum(y * log(max(p, FLT_MIN))) on the same float32 p: both take double logs
    of the same floats and sum <= 7 terms in double, so they agree to a few double ulps
    (rtol 1e-12); (b) train_step's own loss, which uses the kept logits: log(p) of a
    float32 softmax is off by ~1e-7 per class (p's rounding, relative 2**-24, and the
    softmax's few float32 operations), and the batch mean is rounded to float32, so
    atol 1e-5 is 10x that with room for the 7 classes."""
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(7), size=16).astype(np.float32)
    p[0, 3] = 0.0                                  # floored at FLT_MIN, not -inf
    y = np.eye(7, dtype=np.float32)[rng.integers(0, 7, 16)]
    y[1] = 0.5 * y[1] + 0.5 * np.eye(7, dtype=np.float32)[2]   # soft labels
    y[0, 3] = 1.0
    want = -np.sum(y.astype(np.float64) * np.log(np.maximum(p.astype(np.float64),
                                                            np.finfo(np.float32).tiny)), -1)
    got = _core.categorical_crossentropy(y, p)
    assert got.dtype == np.float64 and got.shape == (16,)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)

    net = _core.Net((1, 1, 5))
    net.add("dense", units=7, activation="softmax")
    net.set_optimizer("sgd", learning_rate=0.0)
    x = rng.normal(size=(16, 1, 1, 5)).astype(np.float32)
    y4 = y.reshape(16, 1, 1, 7)
    y4[0] = np.eye(7, dtype=np.float32)[0]
    loss, pred = net.train_step(x, y4)
    assert abs(loss - _core.categorical_crossentropy(y4.reshape(16, 7),
                                                     pred.reshape(16, 7)).mean()) < 1e-5
    with pytest.raises(ValueError, match="same .samples, classes. shape"):
        _core.categorical_crossentropy(y, p[:, :3])
    with pytest.raises(ValueError, match="2-D"):
        _core.categorical_crossentropy(y.ravel(), p.ravel())
