"""Keras layer arguments of aslnet.layers (the C side of each layer kind is tested
in tests/core)."""
import numpy as np
import pytest

import aslnet
from aslnet import layers as L


def _built(layer, shape):
    aslnet.models.Sequential([L.Input(shape), layer])
    return layer


@pytest.mark.parametrize("name, std", [
    ("glorot_uniform", np.sqrt(2 / (300 + 400))), ("glorot_normal", np.sqrt(2 / (300 + 400))),
    ("he_uniform", np.sqrt(2 / 300)), ("he_normal", np.sqrt(2 / 300)),
    ("lecun_uniform", np.sqrt(1 / 300)), ("lecun_normal", np.sqrt(1 / 300)),
    ("random_normal", 0.05), ("random_uniform", 0.1 / np.sqrt(12))])
def test_dense_kernel_initializers_have_keras_s_spread(name, std):
    """Keras's variance-scaling rules: the standard deviation of 120,000 draws within 2%
    (its sampling error is ~0.3%); *_normal draw from a normal of std / 0.8796...
    truncated at 2 of its standard deviations (whose spread is then std)."""
    aslnet.set_random_seed(0)
    w = _built(L.Dense(400, kernel_initializer=name), (300,)).get_weights()[0]
    assert abs(w.std() / std - 1) < 0.02 and abs(w.mean()) < 3 * std / np.sqrt(w.size)
    if name.endswith("_normal") and name != "random_normal":
        assert np.abs(w).max() <= 2 * std / 0.87962566103423978 * 1.0001


def test_initializers_by_name_config_and_object():
    keras = pytest.importorskip("tensorflow").keras
    d = _built(L.Dense(3, kernel_initializer="zeros", bias_initializer="ones"), (4,))
    assert (d.get_weights()[0] == 0).all() and (d.get_weights()[1] == 1).all()
    c = _built(L.Conv2D(2, 3, kernel_initializer={"class_name": "Constant",
                                                   "config": {"value": 0.5}}), (5, 5, 1))
    assert (c.get_weights()[0] == 0.5).all()
    dw = _built(L.DepthwiseConv2D(3, depthwise_initializer=keras.initializers.Ones()),
                (5, 5, 2))
    assert (dw.get_weights()[0] == 1).all()


def test_what_aslnet_cannot_do_is_refused_not_ignored():
    with pytest.raises(ValueError, match="unsupported initializer 'orthogonal'"):
        L.Dense(3, kernel_initializer="orthogonal")
    with pytest.raises(ValueError, match="seeded"):
        L.Dense(3, kernel_initializer={"class_name": "GlorotUniform", "config": {"seed": 1}})
    with pytest.raises(NotImplementedError, match="noise_shape"):
        L.Dropout(0.5, noise_shape=(None, 1))
    for layer, kw in ((L.Dense, {"kernel_regularizer": "l2"}),
                      (L.Conv2D, {"data_format": "channels_first"}),
                      (L.Conv2D, {"groups": 2}),
                      (L.GlobalAveragePooling2D, {"data_format": "channels_first"}),
                      (L.Flatten, {"data_format": "channels_first"}),
                      (L.Dense, {"dtype": "float64"}),
                      (L.Dense, {"kernel_constraint": "non_neg"})):
        args = {L.Dense: (3,), L.Conv2D: (2, 3)}.get(layer, ())
        with pytest.raises(NotImplementedError, match=next(iter(kw))):
            layer(*args, **kw)
    with pytest.raises(TypeError, match="unexpected arguments"):
        L.Dense(3, kernel_regulariser=None)


def test_keras_arguments_at_their_neutral_values_are_taken():
    """What Keras code passes at values that change nothing (e.g. the mixed-precision
    guide's Dense(..., dtype='float32') output layer) builds the same layer."""
    keras = pytest.importorskip("keras")
    for layer in (L.Conv2D(2, 3, data_format="channels_last", dilation_rate=(1, 1),
                           kernel_regularizer=None, bias_constraint=None, groups=1),
                  L.Dense(3, dtype="float32"), L.Dense(3, dtype=keras.DTypePolicy("float32")),
                  L.GlobalAveragePooling2D(data_format="channels_last"),
                  L.DepthwiseConv2D(3, depthwise_regularizer=None, dilation_rate=1)):
        assert isinstance(layer, L.Layer) and layer.dtype == "float32"
    d = _built(L.Dense(3, use_bias=False), (4,))
    assert d.kernel.shape == (4, 3) and d.bias is None
    c = _built(L.Conv2D(2, 3), (5, 5, 1))
    assert c.kernel.shape == (3, 3, 1, 2) and c.bias.shape == (2,)


# What was importable from the one-file aslnet.layers (0.1) and is still used by name
# elsewhere (aslnet.models, optimizers, saving, summary, applications, tools, notebooks).
_LEGACY_NAMES = (
    "Layer", "InputLayer", "Input", "Conv2D", "DepthwiseConv2D", "ZeroPadding2D",
    "BatchNormalization", "ReLU", "Activation", "GlobalAveragePooling2D", "GlobalMaxPooling2D",
    "Dropout", "Reshape", "Flatten", "Dense", "Variable", "KerasTensor", "LAYER_CLASSES",
    "core_shape", "_is_neutral", "_NEUTRAL_ARGS", "_activation_name", "_ACTIVATIONS", "_pair",
    "_initializer", "_init_value", "_glorot_uniform", "_conv_fans", "_pop_input_shape",
    "_GlobalPooling2D")


def test_the_layers_package_keeps_every_name_of_the_old_module():
    """Old pickles name classes as aslnet.layers.X; the package keeps them there, and
    each registered class lives in its family's module."""
    missing = [n for n in _LEGACY_NAMES if not hasattr(L, n)]
    assert missing == []
    for name, cls in L.LAYER_CLASSES.items():
        assert getattr(L, name) is cls and cls.__module__.startswith("aslnet.layers.")
    # (and Keras's functional merges, add([a, b]) ...)
    assert set(L.__all__) <= set(L.LAYER_CLASSES) | {"Layer", "Input", "add", "multiply",
                                                     "concatenate"}


def test_shape_errors_name_the_layer():
    with pytest.raises(ValueError, match=r"Layer 'c3'.*input \(2, 2, 1\) is smaller than kernel "
                                         r"\(3, 3\) with padding 'valid'"):
        L.Conv2D(2, 3, name="c3")(L.Input((2, 2, 1)))
    with pytest.raises(ValueError, match="Layer 'k0'.*kernel_size must be >= 1"):
        L.Conv2D(2, (0, 3), name="k0")(L.Input((5, 5, 1)))
    with pytest.raises(ValueError, match=r"Layer 'zp' expects \(h, w, c\)"):
        L.ZeroPadding2D(name="zp")(L.Input((5,)))
