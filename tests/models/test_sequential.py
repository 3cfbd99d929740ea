"""Sequential: the ways Keras code builds it, edits it, saves it."""
import gc
import weakref

import numpy as np
import pytest

import aslnet
from aslnet import layers as L
from aslnet.models import Model
from aslnet.optimizers import SGD, Adam

from tests.model_fixtures import data


# -- what Keras code writes (from a Keras user's walk through the API) ------------------
def test_sequential_styles_and_its_layers_leave_out_the_input():
    """Sequential([...input_shape=...]), Sequential() + add(), InputLayer(shape=): the same
    model; as in Keras, a Sequential's ``layers`` does not hold its InputLayer."""
    aslnet.set_random_seed(0)
    a = aslnet.models.Sequential([L.Conv2D(4, 3, input_shape=(8, 8, 3)),
                                  L.GlobalAveragePooling2D(), L.Dense(3, activation="softmax")])
    b = aslnet.models.Sequential()
    b.add(L.InputLayer(shape=(8, 8, 3)))
    for layer in (L.Conv2D(4, 3), L.GlobalAveragePooling2D(), L.Dense(3, activation="softmax")):
        b.add(layer)
    b.set_weights(a.get_weights())
    assert [type(l).__name__ for l in a.layers] == ["Conv2D", "GlobalAveragePooling2D", "Dense"]
    assert [type(l) for l in b.layers] == [type(l) for l in a.layers]
    assert a.input_shape == b.input_shape == (None, 8, 8, 3)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(a.predict(x, verbose=0), b.predict(x, verbose=0))
    # layers[0] is the first real layer: freezing it freezes the convolution
    a.layers[0].trainable = False
    assert [v.name for v in a.trainable_weights] == [v.name for v in a.layers[2].weights]
    assert a.get_layer(index=0) is a.layers[0]
    a.freeze(upto=-1)
    assert [l.trainable for l in a.layers] == [False, False, True]
    popped = b.pop()
    assert isinstance(popped, L.Dense) and len(b.layers) == 2 and b.output_shape == (None, 4)
    b.add(L.Dense(5, activation="softmax"))
    assert b.predict(x, verbose=0).shape == (2, 5)
    deferred = aslnet.models.Sequential([L.Dense(3)])    # built on its first call (Keras)
    with pytest.raises(ValueError, match="not been built.*call it on a tensor"):
        deferred.predict(x)
    with pytest.raises(ValueError, match="not been built"):
        aslnet.models.Sequential().predict(x)
    with pytest.raises(TypeError, match="no layers"):
        aslnet.models.Sequential().pop()


def test_sequential_saves_and_loads_with_keras_layer_list(tmp_path):
    model = aslnet.models.Sequential([L.Dense(3, activation="softmax", input_dim=4)])
    model.save(tmp_path / "m.h5", save_format="h5")
    back = aslnet.models.load_model(tmp_path / "m.h5")
    assert [type(l) for l in back.layers] == [L.Dense] and back.input_shape == (None, 4)
    with pytest.raises(NotImplementedError, match="save_format"):
        model.save(tmp_path / "m", save_format="tf")


def test_sequential_edits_release_the_old_network():
    x, _ = data(4)
    seq = aslnet.models.Sequential([L.Conv2D(4, 3, input_shape=(16, 16, 3)),
                                    L.GlobalAveragePooling2D(),
                                    L.Dense(3, activation="softmax")])
    seq.predict(x, verbose=0)
    old = weakref.ref(seq._net)
    seq.pop()
    gc.collect()
    assert seq._net is None and old() is None
