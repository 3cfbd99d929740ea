"""Multiply and Concatenate as Keras users call them (a gate and a skip
concatenation in a small head): errors, save/load, and the same outputs and
training step as Keras 3 with the same weights.

Tolerances (Keras parity).  Both sides compute in float32 and sum in other
orders; the deepest reduction here is the 3x3x3 conv (27 terms) and the
pooling of 36 pixels, so outputs differ by ~100 * 2^-24 ~ 6e-6 relative at
most: 1e-5 absolute on softmax outputs in [0, 1].  One SGD step (lr 0.1)
moves each weight by 0.1 * its gradient, whose float32 error is of the same
relative order: 1e-5 absolute on weights of order 1 covers it by a margin
and is far below any routing error (a misplaced gradient path moves a weight
by ~0.1 * |gradient| ~ 1e-2)."""
import os

import numpy as np
import pytest

import aslnet
from aslnet import layers as L

rng = np.random.default_rng(3)


def _head(lib, concat_first):
    """Input -> conv -> pooling -> sigmoid gate (Multiply) -> Dense h ->
    Concatenate -> softmax; ``lib``: aslnet or keras."""
    layers = lib.layers
    inp = layers.Input((6, 6, 3))
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inp)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    gate = layers.Dense(4, activation="sigmoid", name="gate")(x)
    x = layers.Multiply(name="gated")([x, gate])
    h = layers.Dense(5, activation="relu", name="hidden")(x)
    x = layers.Concatenate(name="joined")([x, h] if concat_first else [h, x])
    out = layers.Dense(3, activation="softmax", name="out")(x)
    return lib.Model(inp, out)


def test_head_layer_order_shapes_and_chain():
    model = _head(aslnet, True)
    assert [l.name for l in model.layers[1:]] == ["conv", "pool", "gate", "gated", "hidden",
                                                  "joined", "out"]
    assert model.get_layer("joined").output_shape == (None, 9)
    assert model.get_layer("gated").input_shape == [(None, 4), (None, 4)]
    assert model.count_params() == 112 + 20 + 25 + 30


def test_errors_say_what_and_how():
    inp = L.Input((6, 6, 3))
    x = L.Conv2D(4, 1)(inp)
    y = L.Conv2D(2, 1)(x)
    with pytest.raises(NotImplementedError, match="axis=1 is not supported.*axis=-1"):
        L.Concatenate(axis=1)([x, y])
    with pytest.raises(ValueError, match=r"Multiply\).*same shape.*\(6, 6, 4\).*\(6, 6, 2\)"):
        L.Multiply()([x, y])
    with pytest.raises(ValueError, match="list of 2 tensors.*nest the calls"):
        L.Concatenate()([x, y, y])
    a = L.Dense(3)(L.GlobalAveragePooling2D()(x))
    with pytest.raises(ValueError, match="must match except along the concat axis"):
        L.Concatenate()([x, L.Reshape((1, 1, 3))(a)])
    # two branches from one tensor: not a chain
    pooled = L.GlobalAveragePooling2D()(y)
    b1, b2 = L.Dense(3)(pooled), L.Dense(3)(pooled)
    out = L.Concatenate()([b1, b2])
    with pytest.raises(NotImplementedError, match="parallel branches are not supported"):
        aslnet.Model(inp, out)


def test_functional_forms_and_config():
    inp = L.Input((4,))
    x = L.Dense(4)(inp)
    y = L.multiply([x, L.Dense(4)(x)])
    z = L.concatenate([y, L.Dense(2)(y)], axis=-1)
    assert z.shape == (None, 6)
    layer = z._layer
    assert isinstance(layer, L.Concatenate)
    assert L.Concatenate.from_config(layer.get_config()).axis == -1


@pytest.mark.parametrize("suffix", ["h5", "keras"])
def test_save_and_load_keep_predictions(tmp_path, suffix):
    model = _head(aslnet, False)
    x = rng.standard_normal((4, 6, 6, 3)).astype(np.float32)
    p = model.predict(x, verbose=0)
    model.save(tmp_path / f"m.{suffix}")
    back = aslnet.models.load_model(tmp_path / f"m.{suffix}")
    assert [type(l).__name__ for l in back.layers] == [type(l).__name__ for l in model.layers]
    np.testing.assert_array_equal(back.predict(x, verbose=0), p)


@pytest.mark.keras
@pytest.mark.parametrize("concat_first", [True, False])
def test_outputs_and_a_training_step_match_keras(concat_first, tmp_path):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    keras = pytest.importorskip("keras")
    model = _head(aslnet, concat_first)
    kmodel = _head(keras, concat_first)
    assert [l.name for l in kmodel.layers][1:] == [l.name for l in model.layers][1:]
    assert kmodel.count_params() == model.count_params()
    for layer in model.layers:
        if layer.weights:
            kmodel.get_layer(layer.name).set_weights(layer.get_weights())
    x = rng.standard_normal((8, 6, 6, 3)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[np.arange(8) % 3]
    np.testing.assert_allclose(model.predict(x, verbose=0), kmodel.predict(x, verbose=0),
                               atol=1e-5)
    model.compile(aslnet.optimizers.SGD(0.1), "categorical_crossentropy")
    kmodel.compile(keras.optimizers.SGD(0.1), "categorical_crossentropy")
    model.train_on_batch(x, y)
    kmodel.train_on_batch(x, y)
    for layer in model.layers[1:]:
        for w, kw in zip(layer.get_weights(), kmodel.get_layer(layer.name).get_weights()):
            np.testing.assert_allclose(w, kw, atol=1e-5, err_msg=layer.name)
    # and Keras reads aslnet's file
    model.save(tmp_path / "m.keras")
    back = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(back.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-6)
