"""The layers of issue 14 against Keras 3 (TensorFlow backend), layer by layer.

Deterministic layers: the same weights in both; forward, and the gradients of
L = sum(r * y) w.r.t. the input and every weight (tf.GradientTape), agree.
The random layers are compared where Keras is deterministic too: a range of
one value (RandomRotation((q, q)), RandomZoom((z, z)), RandomTranslation)
draws the same transform for every image, so aslnet's training forward must
equal Keras's training call, for every fill mode and interpolation.

Tolerances.  Both sides compute in float32 and sum in different orders: a
value that sums K terms differs by up to ~K * 2^-24 relative on each side
(tests/core/test_layers14.py), so 8 * max(K, 16) * 2^-24 of the tensor's
largest value, K the reduction depth (conv: kh*kw*cin, a kernel gradient:
n*oh*ow).  Warps: the sampling coordinates of a rotation are computed in
float32 from cos/sin of a float32 angle on both sides (|x'| <= ~2 * size, so
they agree to ~4 * size * 2^-24 pixels); a bilinear value moves by that
times the largest neighbour difference (<= the value range 1 here): 1e-4
absolute covers sizes up to 64 with a margin of ~30.  A coordinate that
lands within that distance of a pixel centre can round the other way in
nearest interpolation or at an image edge: those tests use coordinates that
stay away from half-integers (checked by the assertions' exactness on the
rest) -- we allow at most 1% of values to differ there.
"""
import numpy as np
import pytest

import aslnet
from aslnet import layers as L

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")
pytestmark = pytest.mark.keras

EPS32 = 2.0 ** -24


def _tol(k):
    return 8 * max(k, 16) * EPS32


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    s = np.abs(b).max()
    return float(np.abs(a - b).max() / (s if s > 0 else 1.0))


def _run_aslnet(layer, x, r, training=False, network=None):
    """(y, dx, weight gradients, network) of a one-layer aslnet model."""
    if network is None:
        network = aslnet.models.Sequential([L.InputLayer(x.shape[1:]), layer])._core()
    network.sync("float32")
    y = network.net.forward(x, training=training)
    dx = network.net.backward(r, need_dx=True) if r is not None else None
    grads = []
    if layer.weights and r is not None:
        i = network.holder(layer)
        grads = [network.net.grad(i, j) for j in range(len(layer.weights))]
    return y, dx, grads, network


def _run_keras(klayer, x, r, weights, training=False):
    xt = tf.constant(x)
    klayer.build(x.shape)
    if weights:
        klayer.set_weights(weights)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = klayer(xt, training=training)
        loss = tf.reduce_sum(y * r) if r is not None else None
    if r is None:
        return y.numpy(), None, []
    g = tape.gradient(loss, [xt] + list(klayer.trainable_weights))
    return y.numpy(), g[0].numpy(), [t.numpy() for t in g[1:]]


DETERMINISTIC = [
    # id, aslnet layer, keras layer, input shape, depth K of y and of the gradients
    ("maxpool_same_s2", lambda: L.MaxPooling2D(3, 2, padding="same"),
     lambda: keras.layers.MaxPooling2D(3, 2, padding="same"), (7, 6, 3), 9),
    ("maxpool_default", lambda: L.MaxPooling2D(), lambda: keras.layers.MaxPooling2D(),
     (9, 8, 2), 4),
    ("avgpool_same", lambda: L.AveragePooling2D((3, 2), 1, padding="same"),
     lambda: keras.layers.AveragePooling2D((3, 2), 1, padding="same"), (5, 6, 2), 6),
    ("avgpool_valid_s2", lambda: L.AveragePooling2D(2), lambda: keras.layers.AveragePooling2D(2),
     (7, 7, 3), 4),
    ("softmax", lambda: L.Softmax(), lambda: keras.layers.Softmax(), (3, 3, 7), 7),
    ("sigmoid", lambda: L.Activation("sigmoid"), lambda: keras.layers.Activation("sigmoid"),
     (3, 4, 5), 1),
    ("tanh", lambda: L.Activation("tanh"), lambda: keras.layers.Activation("tanh"), (3, 4, 5), 1),
    ("swish", lambda: L.Activation("swish"), lambda: keras.layers.Activation("swish"),
     (3, 4, 5), 1),
    ("silu", lambda: L.Activation("silu"), lambda: keras.layers.Activation("silu"), (3, 4, 5), 1),
    ("leaky_relu_name", lambda: L.Activation("leaky_relu"),
     lambda: keras.layers.Activation("leaky_relu"), (3, 4, 5), 1),
    ("conv_leaky_relu", lambda: L.Conv2D(3, 2, activation="leaky_relu"),
     lambda: keras.layers.Conv2D(3, 2, activation="leaky_relu"), (5, 5, 2), 8),
    ("leaky_relu", lambda: L.LeakyReLU(0.2), lambda: keras.layers.LeakyReLU(0.2), (3, 4, 5), 1),
    ("leaky_relu_default", lambda: L.LeakyReLU(), lambda: keras.layers.LeakyReLU(), (3, 4, 5), 1),
    ("relu_args", lambda: L.ReLU(max_value=2.0, negative_slope=0.1, threshold=0.4),
     lambda: keras.layers.ReLU(max_value=2.0, negative_slope=0.1, threshold=0.4), (3, 4, 5), 1),
    ("relu_max3", lambda: L.ReLU(3.0), lambda: keras.layers.ReLU(3.0), (3, 4, 5), 1),
    ("rescaling", lambda: L.Rescaling(1 / 127.5, offset=-1), 
     lambda: keras.layers.Rescaling(1 / 127.5, offset=-1), (4, 4, 3), 1),
    ("conv_dilated", lambda: L.Conv2D(4, 3, dilation_rate=2, padding="same", activation="tanh"),
     lambda: keras.layers.Conv2D(4, 3, dilation_rate=2, padding="same", activation="tanh"),
     (8, 7, 3), 27),
    ("conv_strided_sigmoid", lambda: L.Conv2D(3, (3, 2), strides=(2, 1), activation="sigmoid"),
     lambda: keras.layers.Conv2D(3, (3, 2), strides=(2, 1), activation="sigmoid"), (7, 6, 2), 12),
    ("dense_swish", lambda: L.Dense(5, activation="swish"),
     lambda: keras.layers.Dense(5, activation="swish"), (1, 1, 6), 6),
    ("depthwise_dilated", lambda: L.DepthwiseConv2D(3, dilation_rate=(2, 1), depth_multiplier=2),
     lambda: keras.layers.DepthwiseConv2D(3, dilation_rate=(2, 1), depth_multiplier=2),
     (8, 6, 3), 9),
    ("separable", lambda: L.SeparableConv2D(4, 3, padding="same", depth_multiplier=2,
                                            activation="relu"),
     lambda: keras.layers.SeparableConv2D(4, 3, padding="same", depth_multiplier=2,
                                          activation="relu"), (6, 6, 3), 9 * 6),
    ("separable_strided_nobias", lambda: L.SeparableConv2D(3, 3, strides=2, use_bias=False),
     lambda: keras.layers.SeparableConv2D(3, 3, strides=2, use_bias=False), (7, 7, 2), 18),
]


@pytest.mark.parametrize("case", DETERMINISTIC, ids=[c[0] for c in DETERMINISTIC])
def test_forward_and_gradients_match_keras(case):
    name, make, make_keras, shape, k = case
    rng = np.random.default_rng(abs(hash(name)) % 2 ** 32)
    x = rng.normal(0.2, 1.5, (3, *shape)).astype(np.float32)
    layer = make()
    y, _, _, network = _run_aslnet(layer, x, None)
    r = rng.normal(0, 1, y.shape).astype(np.float32)
    for v in layer.weights:   # random weights, the same in Keras
        v.assign(rng.normal(0, 0.5, v.shape).astype(np.float32))
    y, dx, grads, _ = _run_aslnet(layer, x, r, network=network)
    ky, kdx, kgrads = _run_keras(make_keras(), x, r, layer.get_weights())
    n_out = int(np.prod(y.shape[:3]))
    assert _rel(y, ky) <= _tol(k), ("y", _rel(y, ky))
    assert _rel(dx, kdx) <= _tol(k + y.shape[-1]), ("dx", _rel(dx, kdx))
    assert len(grads) == len(kgrads)
    for g, kg in zip(grads, kgrads):
        assert _rel(g, kg) <= _tol(n_out * 4), ("grad", _rel(g, kg))


@pytest.mark.parametrize("make, make_keras", [
    (lambda: L.SeparableConv2D(8, 3, depth_multiplier=2),
     lambda: keras.layers.SeparableConv2D(8, 3, depth_multiplier=2)),
    (lambda: L.Conv2D(8, 3, dilation_rate=2), lambda: keras.layers.Conv2D(8, 3, dilation_rate=2)),
    (lambda: L.MaxPooling2D(), lambda: keras.layers.MaxPooling2D()),
    (lambda: L.LeakyReLU(), lambda: keras.layers.LeakyReLU()),
    (lambda: L.Resizing(5, 7), lambda: keras.layers.Resizing(5, 7)),
])
def test_parameter_counts_shapes_and_weight_names_equal_keras(make, make_keras):
    layer = make()
    aslnet.models.Sequential([L.InputLayer((9, 9, 3)), layer])
    kl = make_keras()
    kl.build((None, 9, 9, 3))
    assert layer.count_params() == kl.count_params()
    assert [v.shape for v in layer.weights] == [tuple(v.shape) for v in kl.weights]
    assert [v.name.split("/")[-1].split(":")[0] for v in layer.weights] == \
        [v.path.split("/")[-1] for v in kl.weights]
    assert tuple(layer.output_shape) == tuple(kl.compute_output_shape((None, 9, 9, 3)))


@pytest.mark.parametrize("shape, kw", [
    ((12, 10, 3), dict(height=5, width=7)),
    ((8, 8, 2), dict(height=13, width=11)),
    ((12, 10, 3), dict(height=5, width=7, interpolation="nearest")),
    ((9, 14, 2), dict(height=6, width=6, crop_to_aspect_ratio=True)),
    ((9, 14, 2), dict(height=4, width=9, crop_to_aspect_ratio=True, interpolation="nearest")),
])
def test_resizing_matches_keras(shape, kw):
    x = np.random.default_rng(3).uniform(0, 1, (2, *shape)).astype(np.float32)
    y, _, _, _ = _run_aslnet(L.Resizing(**kw), x, None)
    ky = keras.layers.Resizing(**kw)(x).numpy()
    assert np.abs(y - ky).max() <= 1e-6


@pytest.mark.parametrize("shape, hw", [((9, 10, 3), (5, 6)), ((8, 8, 2), (8, 3)),
                                       ((6, 9, 1), (8, 4)), ((5, 5, 2), (7, 9))])
def test_center_crop_matches_keras(shape, hw):
    x = np.random.default_rng(4).uniform(0, 1, (2, *shape)).astype(np.float32)
    y, _, _, _ = _run_aslnet(L.CenterCrop(*hw), x, None)
    ky = keras.layers.CenterCrop(*hw)(x).numpy()
    assert np.abs(y - ky).max() <= 1e-6


WARPS = [
    (lambda **k: L.RandomRotation((0.1, 0.1), **k),
     lambda **k: keras.layers.RandomRotation((0.1, 0.1), **k)),
    (lambda **k: L.RandomRotation((-0.37, -0.37), **k),
     lambda **k: keras.layers.RandomRotation((-0.37, -0.37), **k)),
    (lambda **k: L.RandomZoom((-0.3, -0.3), **k),
     lambda **k: keras.layers.RandomZoom((-0.3, -0.3), **k)),
    (lambda **k: L.RandomZoom((0.4, 0.4), (-0.2, -0.2), **k),
     lambda **k: keras.layers.RandomZoom((0.4, 0.4), (-0.2, -0.2), **k)),
    (lambda **k: L.RandomTranslation((0.3, 0.3), (-0.55, -0.55), **k),
     lambda **k: keras.layers.RandomTranslation((0.3, 0.3), (-0.55, -0.55), **k)),
]


@pytest.mark.parametrize("fill_mode", ["reflect", "wrap", "constant", "nearest"])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("warp", range(len(WARPS)))
def test_warps_match_keras_training_call(warp, fill_mode, interpolation):
    make, make_keras = WARPS[warp]
    kw = dict(fill_mode=fill_mode, interpolation=interpolation, fill_value=0.5)
    x = np.random.default_rng(5).uniform(0, 1, (2, 13, 11, 3)).astype(np.float32)
    y, _, _, _ = _run_aslnet(make(seed=1, **kw), x, None, training=True)
    ky = make_keras(seed=1, **kw)(x, training=True).numpy()
    diff = np.abs(y - ky)
    if interpolation == "bilinear" and fill_mode != "nearest":
        assert diff.max() <= 1e-4
    else:   # rounding of coordinates at x.5 may differ: nearly all values equal
        assert np.mean(diff > 1e-4) <= 0.01
    assert np.abs(ky - x).max() > 0.1     # the warp did something


def _ops(layer):
    return [(k, {a: b for a, b in cfg.items() if a != "seed"}) for k, cfg in layer._core_ops()]


def test_keras_configs_round_trip():
    """get_config / from_config; Keras 3 builds each layer from aslnet's Keras config, and
    Keras's own config of it gives back a layer that computes the same C ops."""
    from aslnet.saving.serialization import _aslnet_layer_config, _keras_layer_config
    layers = [L.MaxPooling2D(3, 2, "same"), L.AveragePooling2D(), L.Softmax(), L.LeakyReLU(0.1),
              L.ReLU(2.0, 0.1, 0.3), L.Rescaling(0.5, 1.0), L.Resizing(4, 5, "nearest", True),
              L.CenterCrop(3, 3), L.RandomFlip("horizontal", seed=3),
              L.RandomRotation(0.2, "constant", seed=1), L.RandomZoom(0.1, (-0.2, 0.3)),
              L.RandomTranslation(0.1, 0.2, "wrap"), L.RandomContrast((0.1, 0.4)),
              L.SeparableConv2D(4, 3, dilation_rate=2, activation="tanh"),
              L.Conv2D(2, 3, dilation_rate=2, activation="sigmoid")]
    for layer in layers:
        aslnet.models.Sequential([L.InputLayer((8, 8, 3)), layer])
        cls = type(layer)
        cfg = layer.get_config()
        assert cls.from_config(cfg).get_config() == cfg
        kl = getattr(keras.layers, cls.__name__).from_config(_keras_layer_config(layer))
        back = cls.from_config(_aslnet_layer_config(cls, cls.__name__, kl.get_config(),
                                                    layer.name))
        back._in_shape = layer._in_shape
        assert _ops(back) == _ops(layer), cls.__name__
