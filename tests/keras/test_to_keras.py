"""``aslnet.utils.keras_export.to_keras`` builds the Keras model aslnet's is:
same layers, names, weights, trainable flags and optimizer; it predicts and
trains as aslnet does.  Models, helpers and tolerances (argued there) are
test_keras_parity.py's."""
import numpy as np
import pytest

from tests.keras.test_keras_parity import (  # also skips this module without Keras 3
    ALPHA, BATCH, CLASSES, LOGIT_REL, LOSS_ATOL, SOFTMAX_ATOL, TRAINABLE, _aslnet_mobilenet,
    _compare_weights, _compile_pair, _dense_head_pair, _keras_mobilenet, _one_thread,
    _randomize, _snapshot, data, keras)

import aslnet
from aslnet import layers as L
from aslnet.applications.mobilenet import MobileNet
from aslnet.utils.keras_export import to_keras

pytestmark = pytest.mark.keras
__all__ = ["data", "_one_thread"]       # fixtures, used by pytest


# -- aslnet.utils.keras_export.to_keras -------------------------------------------------

def test_to_keras_mobilenet(data):
    x, y = data
    model = _aslnet_mobilenet(x)
    model.freeze(-TRAINABLE)
    model.compile(optimizer=aslnet.optimizers.Adam(3e-4), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    kmodel = to_keras(model)
    reference = _keras_mobilenet(model)
    def names(m):  # Keras auto-names the pooling layer differently each build
        return [l.name for l in m.layers[1:]
                if not isinstance(l, keras.layers.GlobalAveragePooling2D)]
    assert names(kmodel) == names(reference)
    assert kmodel.layers[0].name == model.layers[0].name
    klayers = {l.name: l for l in kmodel.layers}
    for layer in model.layers[1:]:
        if layer.name in klayers:
            assert klayers[layer.name].trainable == layer.trainable, layer.name
            for wa, wk in zip(layer.get_weights(), klayers[layer.name].get_weights()):
                np.testing.assert_array_equal(wa, wk, err_msg=layer.name)
    assert len(kmodel.trainable_weights) == len(model.trainable_weights)
    assert isinstance(kmodel.optimizer, keras.optimizers.Adam)
    assert float(kmodel.optimizer.learning_rate.numpy()) == pytest.approx(3e-4)
    assert kmodel.optimizer.epsilon == 1e-7
    np.testing.assert_allclose(kmodel.predict(x, verbose=0), reference.predict(x, verbose=0),
                               atol=1e-7)
    np.testing.assert_allclose(kmodel.predict(x, verbose=0), model.predict_on_batch(x),
                               atol=SOFTMAX_ATOL)
    logs = kmodel.train_on_batch(x[:BATCH], y[:BATCH], return_dict=True)
    assert set(logs) == {"loss", "accuracy"}
    alogs = model.train_on_batch(x[:BATCH], y[:BATCH], return_dict=True)
    assert set(alogs) == {"loss", "accuracy"}
    assert logs["loss"] == pytest.approx(alogs["loss"], abs=LOSS_ATOL)
    assert logs["accuracy"] == alogs["accuracy"]


@pytest.mark.parametrize("kw", [dict(include_top=False, pooling="avg"),
                                dict(include_top=False, pooling="max"),
                                dict(include_top=False),
                                dict(alpha=0.5, depth_multiplier=2, classes=7, dropout=0.3,
                                     classifier_activation="linear")],
                         ids=["avg", "max", "no_top", "alpha0.5_dm2_linear"])
def test_to_keras_mobilenet_variants(kw):
    shape = (64, 64, 3)
    x = np.random.default_rng(4).uniform(-1, 1, (3,) + shape).astype(np.float32)
    aslnet.set_random_seed(5)
    model = MobileNet(input_shape=shape, weights=None, **{"alpha": ALPHA, **kw})
    _randomize(model, x, np.random.default_rng(6))
    kmodel = to_keras(model)
    assert "conv1_pad" not in [l.name for l in kmodel.layers]   # keras.applications' trunk
    p, pk = model.predict_on_batch(x), kmodel.predict(x, verbose=0)
    assert p.shape == pk.shape
    scale = float(np.abs(pk).max())
    assert scale > 1e-2
    assert float(np.abs(p - pk).max()) <= LOGIT_REL * scale


def test_to_keras_dense_head(data):
    x, y = data
    model, reference = _dense_head_pair(x)
    kmodel = to_keras(model, compile=False)
    assert [l.name for l in kmodel.layers][-2:] == [l.name for l in model.layers][-2:]
    assert [l.name for l in kmodel.layers if l.trainable and l.weights] == \
        [l.name for l in reference.layers if l.trainable and l.weights]
    np.testing.assert_allclose(kmodel.predict(x, verbose=0), reference.predict(x, verbose=0),
                               atol=1e-7)
    assert getattr(kmodel, "optimizer", None) is None
    _compile_pair(model, kmodel, "sgd")
    before = _snapshot(model)
    for s in range(2):
        xb, yb = x[s * BATCH:(s + 1) * BATCH], y[s * BATCH:(s + 1) * BATCH]
        assert model.train_on_batch(xb, yb) == pytest.approx(kmodel.train_on_batch(xb, yb),
                                                             abs=LOSS_ATOL)
    _compare_weights(model, kmodel, before, "sgd", 0.01, steps=2)


def _chain(seed=3):
    """Every layer kind aslnet has, as one chain, with random weights."""
    aslnet.set_random_seed(seed)
    inp = L.Input((9, 8, 3))
    x = L.ZeroPadding2D(((1, 0), (0, 1)), name="pad")(inp)
    x = L.Conv2D(6, 3, strides=2, activation="relu", name="conv")(x)
    x = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw")(x)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU(6.0, name="relu6")(x)
    x = L.Conv2D(8, 1, activation="relu6", name="pw")(x)
    x = L.GlobalMaxPooling2D(keepdims=True, name="gmp")(x)
    x = L.Flatten(name="flat")(x)
    x = L.Dense(16, activation="relu", name="fc")(x)
    x = L.BatchNormalization(momentum=0.9, name="bn_fc")(x)   # 4 samples: biased var 3/4
    x = L.Dropout(0.0, name="drop")(x)
    x = L.Reshape((2, 2, 4), name="grid")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dense(5, name="logits")(x)
    x = L.Activation("softmax", name="probs")(x)
    model = aslnet.Model(inp, x)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.weights:
            layer.set_weights([w + rng.normal(0, 0.3, w.shape) if j < 2 else
                               np.abs(w + rng.normal(0, 0.3, w.shape))
                               for j, w in enumerate(layer.get_weights())])
    return model


def test_to_keras_chain():
    model = _chain()
    kmodel = to_keras(model)
    assert [l.name for l in kmodel.layers] == [l.name for l in model.layers]
    rng = np.random.default_rng(5)
    x = rng.normal(size=(8, 9, 8, 3)).astype(np.float32)
    y = np.eye(5, dtype=np.float32)[rng.integers(0, 5, 8)]
    np.testing.assert_allclose(kmodel.predict(x, verbose=0), model.predict_on_batch(x),
                               atol=SOFTMAX_ATOL)
    model.get_layer("conv").trainable = False
    kmodel = to_keras(model)
    assert not kmodel.get_layer("conv").trainable
    _compile_pair(model, kmodel, "sgd")
    before = _snapshot(model)
    for s in range(2):
        xb, yb = x[4 * s:4 * s + 4], y[4 * s:4 * s + 4]
        assert model.train_on_batch(xb, yb) == pytest.approx(kmodel.train_on_batch(xb, yb),
                                                             abs=LOSS_ATOL)
    _compare_weights(model, kmodel, before, "sgd", 0.01, steps=2)


def test_to_keras_odd_input_keeps_conv1_pad():
    """For odd sizes Keras 3's MobileNet (conv1 padding="same") is a different
    network from aslnet's / tf.keras 2's (conv1_pad + "valid"): to_keras then
    converts layer by layer and keeps conv1_pad."""
    shape = (65, 65, 3)
    aslnet.set_random_seed(11)
    model = MobileNet(alpha=ALPHA, input_shape=shape, weights=None, classes=CLASSES,
                      dropout=0.0)
    assert model.get_layer("conv1").output_shape[1:3] == (32, 32)
    keras_own = keras.applications.MobileNet(input_shape=shape, alpha=ALPHA, weights=None,
                                             classes=CLASSES)
    assert tuple(keras_own.get_layer("conv1").output.shape[1:3]) == (33, 33)
    kmodel = to_keras(model)
    assert "conv1_pad" in [l.name for l in kmodel.layers]
    x = np.random.default_rng(2).uniform(-1, 1, (2,) + shape).astype(np.float32)
    np.testing.assert_allclose(kmodel.predict(x, verbose=0), model.predict_on_batch(x),
                               atol=SOFTMAX_ATOL)


def test_to_keras_rejects_unknown_layer():
    class Odd(L.Layer):
        pass
    inp = L.Input((4,))
    model = aslnet.Model(inp, Odd(name="odd")(inp))
    with pytest.raises(NotImplementedError, match="odd"):
        to_keras(model)
