"""Small models and data shared by the model, trainer and engine tests."""
import numpy as np
import pytest

import aslnet
from aslnet import layers as L
from aslnet.models import Model
from aslnet.optimizers import SGD, Adam


def small_model(seed=0, dropout=0.0, classes=3):
    aslnet.set_random_seed(seed)
    inp = L.Input((16, 16, 3))
    x = L.ZeroPadding2D(((0, 1), (0, 1)))(inp)
    x = L.Conv2D(8, 3, strides=2, use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = L.ReLU(6.0)(x)
    x = L.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = L.ReLU(6.0)(x)
    x = L.Conv2D(16, 1, use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = L.ReLU(6.0)(x)
    x = L.GlobalAveragePooling2D()(x)
    if dropout:
        x = L.Dropout(dropout)(x)
    out = L.Dense(classes, activation="softmax")(x)
    model = Model(inp, out)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            c = layer.weights[0].shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.1, c),
                               rng.normal(0, 0.1, c), rng.uniform(0.5, 1.5, c)])
    return model


def data(n=24, classes=3, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 16, 16, 3)).astype(np.float32)
    y = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, n)]
    return x, y


# -- Keras semantics of the API (each a behaviour a Keras user relies on) -------------
def _tiny(units=4):
    """Dense(softmax) on 4 features: bias b gives every sample p = softmax(b)."""
    m = aslnet.models.Sequential([L.Input((4,)), L.Dense(units, activation="softmax")])
    m.set_weights([np.zeros((4, units), np.float32), np.arange(units, dtype=np.float32)])
    return m


# -- batched inference: large early activations one image at a time ------------------
def wide_model(seed=0):
    """Its first activation (96 x 96 x 16 floats, 590 KB per image) is above
    aslnet.engine.network.MICRO_BYTES, the next ones below: batched inference splits after the
    depthwise block."""
    aslnet.set_random_seed(seed)
    inp = L.Input((96, 96, 3))
    x = L.ReLU(6.0)(L.BatchNormalization()(L.Conv2D(16, 3, padding="same", use_bias=False)(inp)))
    x = L.ReLU(6.0)(L.BatchNormalization()(L.DepthwiseConv2D(3, strides=2, padding="same",
                                                             use_bias=False)(x)))
    x = L.ReLU(6.0)(L.BatchNormalization()(L.Conv2D(32, 1, use_bias=False)(x)))
    out = L.Dense(3, activation="softmax")(L.GlobalAveragePooling2D()(x))
    model = Model(inp, out)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            c = layer.weights[0].shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.1, c),
                               rng.normal(0, 0.1, c), rng.uniform(0.5, 1.5, c)])
    return model


def _whole_batch(model, fn):
    """fn() with the per-image split switched off."""
    from aslnet.engine import network
    old = network.MICRO_BYTES
    network.MICRO_BYTES = 1 << 60
    model._net._split_known = False
    try:
        return fn()
    finally:
        network.MICRO_BYTES = old
        model._net._split_known = False
