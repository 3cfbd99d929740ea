"""The Keras surface scripts touch: ``import aslnet as keras`` gives every
submodule; Keras names aslnet lacks import and say so when used; fit and
friends take Keras's arguments."""
import subprocess
import sys
import warnings

import numpy as np
import pytest

import aslnet as keras
from aslnet import layers as L

MODULES = ["applications", "layers", "models", "optimizers", "losses", "metrics", "callbacks",
           "preprocessing", "utils", "regularizers", "initializers", "activations", "backend"]


def test_every_submodule_is_an_attribute():
    for name in MODULES:
        assert getattr(keras, name).__name__ == f"aslnet.{name}"
    assert keras.preprocessing.image.ImageDataGenerator
    assert keras.backend.image_data_format() == "channels_last"
    keras.backend.clear_session()
    apps = keras.applications
    assert apps.MobileNet is apps.mobilenet.MobileNet
    assert apps.mobilenet.decode_predictions is apps.imagenet_utils.decode_predictions
    assert apps.mobilenet_v2.preprocess_input(np.array([255.0]))[0] == 1.0
    assert keras.keras is keras                      # tf.keras -> aslnet
    from aslnet.metrics import categorical_crossentropy  # noqa: F401  (issue 14's script)


def test_mobilenet_v2_is_there_or_says_why_not():
    try:
        v2 = keras.applications.MobileNetV2
    except AttributeError as e:
        assert "MobileNetV2 is not in this version" in str(e)
    else:
        assert callable(v2)


def test_import_is_fast_and_lazy():
    """Lazy submodules keep ``import aslnet`` to what a model needs (serving,
    applications and pretrained load on first use)."""
    code = ("import sys, time; t = time.perf_counter(); import aslnet; "
            "print(time.perf_counter() - t, 'aslnet.serving' in sys.modules, "
            "'aslnet.applications' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[1:] == ["False", "False"]
    assert float(out[0]) < 5.0                 # ~0.6 s here; generous for a loaded machine


def test_keras_names_aslnet_lacks_import_and_refuse_when_used():
    from aslnet.layers import Lambda, MaxPooling3D     # the import alone must not fail
    with pytest.raises(NotImplementedError, match="Lambda is not supported.*Python function"):
        Lambda(lambda x: x)
    with pytest.raises(NotImplementedError, match="MaxPooling3D is not supported"):
        MaxPooling3D()
    with pytest.raises(AttributeError, match="aslnet.layers.*Dense"):
        L.NoSuchLayer
    with pytest.raises(AttributeError, match="aslnet has no ops: aslnet is Keras's API"):
        keras.ops
    with pytest.raises(AttributeError, match="ResNet50.*MobileNet"):
        keras.applications.ResNet50
    with pytest.raises(AttributeError, match="tensor functions"):
        keras.backend.mean


def test_custom_layers_and_model_subclasses_are_refused_when_made():
    class Double(L.Layer):
        def call(self, x):
            return x * 2

    class Net(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(NotImplementedError, match="Custom layer Double.*aslnet's layers"):
        Double()
    with pytest.raises(NotImplementedError, match="Model subclass Net.*functional API"):
        Net()


def test_activations_initializers_regularizers():
    assert np.allclose(keras.activations.softmax(np.zeros((1, 4))), 0.25)
    assert L.Dense(2, activation=keras.activations.relu).activation == "relu"
    w = keras.initializers.Constant(0.5)((2, 3))
    assert w.shape == (2, 3) and np.all(w == 0.5)
    d = L.Dense(2, kernel_initializer=keras.initializers.Ones())
    keras.Sequential([L.Input((3,)), d])
    assert np.all(d.get_weights()[0] == 1)
    assert keras.regularizers.l2(0.01).get_config() == {"l2": 0.01}


def _model():
    keras.set_random_seed(0)
    m = keras.Sequential([L.Input((4,)), L.Dense(3, activation="softmax")])
    m.compile("sgd", "categorical_crossentropy", metrics=["accuracy"])
    return m


def test_fit_and_friends():
    m = _model()
    x = np.random.default_rng(0).normal(size=(12, 4)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[np.arange(12) % 3]
    h = m.fit(x, y, epochs=4, initial_epoch=2, batch_size=4, verbose=0,
              validation_data=(x, y), validation_steps=1)
    assert h.epoch == [2, 3] and len(h.history["val_accuracy"]) == 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m.fit(x, y, verbose=0, workers=4, use_multiprocessing=True)
    assert any("ignored" in str(w.message) for w in caught)
    assert m.predict_on_batch(x).shape == (12, 3)
    loss, acc = m.test_on_batch(x, y)
    assert (loss, acc) == tuple(m.evaluate(x, y, verbose=0, batch_size=12))
    with pytest.warns(DeprecationWarning):
        m.fit_generator(iter([(x, y)] * 2), steps_per_epoch=2, verbose=0)
    with pytest.warns(DeprecationWarning):
        assert m.predict_generator(iter([x]), steps=1).shape == (12, 3)
    with pytest.warns(DeprecationWarning):
        assert len(m.evaluate_generator(iter([(x, y)]), steps=1)) == 2
