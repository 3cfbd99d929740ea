"""Keras 3's files both ways: the .keras archive and the .weights.h5 layout,
against Keras 3 itself (marked ``keras``), and damaged archives.

Tolerance: Keras and aslnet run the same float32 model (same weights, same
inference-mode BatchNormalization) with different summation orders; through
MobileNet the logits differ by a few float32 ulps relative (tests/keras
measures ~1e-6), so softmax probabilities (<= 1) agree to well within 1e-5
absolute.  Anything a file moves (weights, optimizer variables) must be equal
bit for bit."""
import json
import os
import warnings
import zipfile

import h5py
import numpy as np
import pytest

import aslnet
from aslnet import layers as L
from aslnet import saving
from aslnet.models import Model, Sequential, load_model

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(autouse=True)
def _fresh_names():
    aslnet.clear_session()
    aslnet.set_random_seed(1234)
    yield
    aslnet.clear_session()


def _keras():
    keras = pytest.importorskip("keras")
    if not keras.__version__.startswith("3."):
        pytest.skip(f"needs Keras 3, found {keras.__version__}")
    return keras


def _data(n=6, size=32, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, size, size, 3)).astype(np.float32)
    return x, np.eye(classes, dtype=np.float32)[rng.integers(0, classes, n)]


def keras_mobilenet_like(keras, size=32, classes=3):
    """A MobileNet-shaped model built in Keras 3 with every layer kind aslnet has."""
    kl = keras.layers
    inp = keras.Input((size, size, 3), name="img")
    x = kl.ZeroPadding2D(((0, 1), (0, 1)), name="conv1_pad")(inp)
    x = kl.Conv2D(8, 3, strides=2, padding="valid", use_bias=False, name="conv1")(x)
    x = kl.BatchNormalization(name="conv1_bn")(x)
    x = kl.ReLU(6.0, name="conv1_relu")(x)
    x = kl.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw1")(x)
    x = kl.BatchNormalization(name="dw1_bn")(x)
    x = kl.ReLU(name="dw1_relu")(x)
    x = kl.Conv2D(16, 1, use_bias=False, name="pw1")(x)
    x = kl.BatchNormalization(name="pw1_bn")(x)
    x = kl.Activation("relu6", name="pw1_relu")(x)
    x = kl.GlobalAveragePooling2D(keepdims=True, name="pool")(x)
    x = kl.Dropout(1e-3, name="dropout")(x)
    x = kl.Conv2D(classes, 1, name="preds")(x)
    x = kl.Reshape((classes,), name="reshape")(x)
    x = kl.Dense(classes, name="dense")(x)
    x = kl.Activation("softmax", name="softmax")(x)
    return keras.Model(inp, x, name="mobilenet_like")


def _fit_keras(kmodel, keras, x, y, lr=1e-2):
    kmodel.compile(optimizer=keras.optimizers.Adam(lr), loss="categorical_crossentropy",
                   metrics=["accuracy"])
    kmodel.fit(x, y, batch_size=len(x), epochs=2, verbose=0)


def _keras_opt_values(kmodel):
    return [np.asarray(v) for v in kmodel.optimizer.variables]


def _aslnet_opt_values(model):
    from aslnet.saving import keras3_format
    return keras3_format._optimizer_values(model)


def _same(a_list, b_list):
    assert len(a_list) == len(b_list)
    for a, b in zip(a_list, b_list):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _probs_close(a, b):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------
# Keras 3 -> aslnet
# ---------------------------------------------------------------------------
@pytest.mark.keras
def test_a_model_fine_tuned_in_keras3_loads_with_its_predictions_and_optimizer(tmp_path):
    keras = _keras()
    x, y = _data()
    kmodel = keras_mobilenet_like(keras)
    for layer in kmodel.layers[:4]:
        layer.trainable = False                # a frozen trunk, as in the tutorial
    _fit_keras(kmodel, keras, x, y)
    kmodel.save(tmp_path / "k.keras")
    kmodel.save_weights(tmp_path / "k.weights.h5")

    model = load_model(tmp_path / "k.keras")
    assert [l.name for l in model.layers] == [l.name for l in kmodel.layers]
    assert [l.trainable for l in model.layers[1:]] == [l.trainable for l in kmodel.layers[1:]]
    _same(model.get_weights(), kmodel.get_weights())
    _probs_close(model.predict(x, verbose=0), kmodel.predict(x, verbose=0))
    assert model.loss == "categorical_crossentropy" and model.compiled_metrics == ["accuracy"]
    assert isinstance(model.optimizer, aslnet.optimizers.Adam)
    assert model.optimizer.iterations == 2
    _same(_aslnet_opt_values(model), _keras_opt_values(kmodel))

    fresh = Model.from_config(model.get_config())            # same architecture, new weights
    fresh.load_weights(tmp_path / "k.weights.h5")
    _same(fresh.get_weights(), kmodel.get_weights())
    fresh.load_weights(tmp_path / "k.keras")                 # an archive's weights, as Keras
    _same(fresh.get_weights(), kmodel.get_weights())


@pytest.mark.keras
@pytest.mark.slow
def test_the_tutorial_model_fine_tuned_in_keras3_loads_into_aslnet(tmp_path, shared_weights_dir):
    """The tutorial's MobileNet + Dense head: aslnet -> .keras -> Keras 3 fit -> .keras ->
    aslnet, predictions to 1e-5 and optimizer state exactly."""
    keras = _keras()
    model = aslnet.load_pretrained("mobilenet", num_classes=10, weights_dir=shared_weights_dir)
    model.save(tmp_path / "start.keras")
    kmodel = keras.models.load_model(tmp_path / "start.keras")
    assert [l.trainable for l in kmodel.layers[1:]] == [l.trainable for l in model.layers[1:]]
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (4, 224, 224, 3)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[[0, 3, 7, 9]]
    kmodel.compile(optimizer=keras.optimizers.Adam(1e-4), loss="categorical_crossentropy",
                   metrics=["accuracy"])
    kmodel.fit(x, y, batch_size=4, epochs=1, verbose=0)
    kmodel.save(tmp_path / "tuned.keras")
    loaded = load_model(tmp_path / "tuned.keras")
    _same(loaded.get_weights(), kmodel.get_weights())
    _probs_close(loaded.predict(x, verbose=0), kmodel.predict(x, verbose=0))
    assert loaded.optimizer.iterations == 1
    _same(_aslnet_opt_values(loaded), _keras_opt_values(kmodel))


@pytest.mark.keras
def test_keras3_sequential_and_bfloat16_policy(tmp_path):
    keras = _keras()
    k = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, padding="same"),
                          keras.layers.BatchNormalization(), keras.layers.ReLU(),
                          keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")],
                         name="seq")
    k.save(tmp_path / "s.keras")
    model = load_model(tmp_path / "s.keras")
    assert isinstance(model, Sequential) and model.name == "seq"
    x, _ = _data(3, 8)
    _probs_close(model.predict(x, verbose=0), k.predict(x, verbose=0))
    model.dtype_policy = "mixed_bfloat16"
    model.save(tmp_path / "b.keras")
    assert load_model(tmp_path / "b.keras").dtype_policy.name == "mixed_bfloat16"
    kb = keras.models.load_model(tmp_path / "b.keras")
    assert kb.layers[0].dtype_policy.name == "mixed_bfloat16"


# ---------------------------------------------------------------------------
# aslnet -> Keras 3
# ---------------------------------------------------------------------------
def aslnet_mobilenet_like(size=32, classes=3):
    inp = L.Input((size, size, 3), name="img")
    x = L.ZeroPadding2D(((0, 1), (0, 1)), name="conv1_pad")(inp)
    x = L.Conv2D(8, 3, strides=2, use_bias=False, name="conv1")(x)
    x = L.BatchNormalization(name="conv1_bn")(x)
    x = L.ReLU(6.0, name="conv1_relu")(x)
    x = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw1")(x)
    x = L.BatchNormalization(name="dw1_bn")(x)
    x = L.Activation("relu", name="dw1_relu")(x)
    x = L.GlobalAveragePooling2D(name="pool")(x)
    x = L.Reshape((1, 1, 16), name="reshape_1")(x)
    x = L.Dropout(1e-3, name="dropout")(x)
    x = L.Conv2D(classes, 1, name="preds")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(classes, activation="softmax", name="dense")(x)
    return Model(inp, x, name="aslnet_like")


@pytest.mark.keras
@pytest.mark.parametrize("optimizer", ["adam", "sgd_momentum"])
def test_an_aslnet_model_saved_as_keras_loads_in_keras3(tmp_path, optimizer):
    keras = _keras()
    x, y = _data()
    model = aslnet_mobilenet_like()
    model.layers[2].trainable = False
    opt = (aslnet.optimizers.Adam(1e-2) if optimizer == "adam"
           else aslnet.optimizers.SGD(1e-2, momentum=0.9))
    model.compile(optimizer=opt, loss="categorical_crossentropy", metrics=["accuracy"])
    for _ in range(3):
        model.train_on_batch(x, y)
    model.save(tmp_path / "a.keras")
    with zipfile.ZipFile(tmp_path / "a.keras") as zf:
        assert sorted(zf.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
        config = json.loads(zf.read("config.json"))
    assert config["class_name"] == "Functional" and config["compile_config"]["loss"] == \
        "categorical_crossentropy"

    kmodel = keras.models.load_model(tmp_path / "a.keras")
    assert [l.name for l in kmodel.layers] == [l.name for l in model.layers]
    assert [l.trainable for l in kmodel.layers[1:]] == [l.trainable for l in model.layers[1:]]
    _same(kmodel.get_weights(), model.get_weights())
    _probs_close(kmodel.predict(x, verbose=0), model.predict(x, verbose=0))
    assert int(kmodel.optimizer.iterations.numpy()) == 3
    _same(_keras_opt_values(kmodel), _aslnet_opt_values(model))

    model.save_weights(tmp_path / "a.weights.h5")
    kfresh = keras.models.clone_model(kmodel)
    kfresh.load_weights(tmp_path / "a.weights.h5")
    _same(kfresh.get_weights(), model.get_weights())

    # and back: the file Keras writes again is the one aslnet reads
    kmodel.save(tmp_path / "again.keras")
    back = load_model(tmp_path / "again.keras")
    _same(back.get_weights(), model.get_weights())
    _same(_aslnet_opt_values(back), _aslnet_opt_values(model))


def test_keras_round_trip_without_keras(tmp_path):
    """aslnet alone: .keras and .weights.h5 give back weights, config, compile state,
    optimizer state; include_optimizer=False leaves the model uncompiled."""
    x, y = _data()
    model = aslnet_mobilenet_like()
    model.compile(optimizer=aslnet.optimizers.Adam(3e-3), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    model.train_on_batch(x, y)
    model.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    assert loaded.get_config() == model.get_config()
    _same(loaded.get_weights(), model.get_weights())
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    _same(_aslnet_opt_values(loaded), _aslnet_opt_values(model))
    model.save(tmp_path / "n.keras", include_optimizer=False)
    assert load_model(tmp_path / "n.keras").optimizer is None
    model.save_weights(tmp_path / "m.weights.h5")
    with h5py.File(tmp_path / "m.weights.h5") as f:
        assert "layers/conv2d/vars/0" in f and "layers/conv2d_1/vars/1" in f
        assert f["layers/conv2d_1/vars"].attrs["name"] == "preds"
    fresh = aslnet_mobilenet_like()
    fresh.load_weights(tmp_path / "m.weights.h5")
    _same(fresh.get_weights(), model.get_weights())
    with pytest.raises(NotImplementedError, match="save_format"):
        model.save(tmp_path / "m.h5", save_format="keras")


def test_old_aslnet_keras_named_h5_files_still_load(tmp_path):
    """aslnet used to write Keras 2 h5 to '.keras' paths: the content decides."""
    x, y = _data()
    model = aslnet_mobilenet_like()
    model.save(tmp_path / "old.h5")
    os.replace(tmp_path / "old.h5", tmp_path / "old.keras")
    loaded = load_model(tmp_path / "old.keras")
    _same(loaded.get_weights(), model.get_weights())


def test_weights_into_another_architecture_are_refused_before_any_change(tmp_path):
    model = aslnet_mobilenet_like()
    model.save_weights(tmp_path / "m.weights.h5")
    other = aslnet_mobilenet_like(classes=4)
    before = other.get_weights()
    with pytest.raises(ValueError, match="expects|shape"):
        other.load_weights(tmp_path / "m.weights.h5")
    _same(other.get_weights(), before)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        other.load_weights(tmp_path / "m.weights.h5", by_name=True, skip_mismatch=True)
    assert any("preds" in str(m.message) for m in w)
    np.testing.assert_array_equal(other.get_layer("conv1").get_weights()[0],
                                  model.get_layer("conv1").get_weights()[0])


# ---------------------------------------------------------------------------
# Damaged archives
# ---------------------------------------------------------------------------
def _damaged(tmp_path):
    model = aslnet_mobilenet_like()
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    model.save(tmp_path / "good.keras")
    raw = (tmp_path / "good.keras").read_bytes()
    with zipfile.ZipFile(tmp_path / "good.keras") as zf:
        info = zf.getinfo("model.weights.h5")
        members = {n: zf.read(n) for n in zf.namelist()}
    flipped = bytearray(raw)
    flipped[info.header_offset + 30 + len(info.filename) + 1000] ^= 0xFF    # in the h5 data
    files = {"truncated.keras": raw[:len(raw) // 2], "tail_cut.keras": raw[:-10],
             "flipped.keras": bytes(flipped), "header_only.keras": b"PK\x03\x04",
             "empty_zip.keras": b"PK\x05\x06" + b"\0" * 18}

    def rezip(name, **replace):
        with zipfile.ZipFile(tmp_path / name, "w") as zf:
            for n, data in {**members, **replace}.items():
                if data is not None:
                    zf.writestr(n, data)
    rezip("no_config.keras", **{"config.json": None})
    rezip("bad_json.keras", **{"config.json": b"{not json"})
    rezip("not_a_model.keras", **{"config.json": b'{"class_name": "Foo", "config": {}}'})
    rezip("bad_h5.keras", **{"model.weights.h5": b"not hdf5 at all"})
    rezip("no_weights.keras", **{"model.weights.h5": None})
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return model, sorted(files) + ["no_config.keras", "bad_json.keras", "bad_h5.keras",
                                   "no_weights.keras", "not_a_model.keras"]


def test_damaged_archives_give_a_model_file_error(tmp_path):
    model, names = _damaged(tmp_path)
    for name in names:
        with pytest.raises((saving.ModelFileError, NotImplementedError)) as e:
            load_model(tmp_path / name)
        assert name in str(e.value) or "model" in str(e.value), name
        if name not in ("not_a_model.keras", "no_config.keras", "bad_json.keras"):
            with pytest.raises(saving.ModelFileError):
                model.load_weights(tmp_path / name)


@pytest.mark.parametrize("name", ["m.keras", "m.h5"])
def test_synchronized_batch_norm_survives_saving(tmp_path, name):
    """synchronized=True (used under DataParallel) is kept by both formats; the Keras 3
    config always has the key, as Keras writes it."""
    inputs = aslnet.Input((4, 4, 2))
    h = L.BatchNormalization(synchronized=True, name="sbn")(inputs)
    h = L.BatchNormalization(name="bn")(h)
    model = Model(inputs, L.GlobalAveragePooling2D()(h))
    model.save(tmp_path / name)
    loaded = load_model(tmp_path / name)
    assert loaded.get_layer("sbn").synchronized and not loaded.get_layer("bn").synchronized
    if name.endswith(".keras"):
        with zipfile.ZipFile(tmp_path / name) as z:
            cfg = json.loads(z.read("config.json"))
        layers_cfg = {l["config"]["name"]: l["config"] for l in cfg["config"]["layers"]}
        assert layers_cfg["sbn"]["synchronized"] is True
        assert layers_cfg["bn"]["synchronized"] is False


@pytest.mark.keras
def test_a_quantized_aslnet_model_loads_in_keras3_as_its_float32_model(tmp_path):
    """The quantization state is a member Keras 3 does not read: Keras gets the float32
    model (aslnet's load_model the int8 one, tests/trainers/test_quantize.py)."""
    keras = _keras()
    from tests.model_fixtures import small_model
    model = small_model()
    x = np.random.default_rng(0).uniform(-1, 1, (4, 16, 16, 3)).astype(np.float32)
    p32 = model.predict(x, verbose=0)
    model.quantize("int8", calibration_data=x)
    model.save(tmp_path / "q.keras")
    np.testing.assert_allclose(keras.saving.load_model(tmp_path / "q.keras").predict(
        x, verbose=0), p32, rtol=0, atol=1e-6)
