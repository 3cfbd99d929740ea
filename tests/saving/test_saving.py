"""Model.save / models.load_model / save_weights / load_weights (aslnet/saving/):
exact round trips, Keras 2.x h5 layout, atomic writes, bad files."""
import json
import os
import warnings

import h5py
import numpy as np
import pytest

import aslnet
from aslnet import layers as L
from aslnet import saving
from aslnet.saving import h5_format
from aslnet.models import Model, Sequential, load_model

SUFFIXES = [".h5", ".hdf5", ".keras", ".aslnet", ""]


def small_model(units=3, extra_dense=False):
    inp = L.Input((32, 32, 3))
    x = L.Conv2D(4, 3)(inp)
    x = L.BatchNormalization()(x)
    x = L.ReLU(6.0)(x)
    x = L.GlobalAveragePooling2D()(x)
    if extra_dense:
        x = L.Dense(5)(x)
    x = L.Dense(units, activation="softmax")(x)
    return Model(inp, x)


@pytest.fixture(autouse=True)
def _fresh_names():
    aslnet.clear_session()
    aslnet.set_random_seed(1234)
    yield
    aslnet.clear_session()


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    x = rng.random((8, 32, 32, 3), dtype=np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 8)]
    return x, y


def trained(data, optimizer=None, steps=2, model=None, metrics=("accuracy",)):
    model = model or small_model()
    model.compile(optimizer=optimizer or aslnet.optimizers.Adam(1e-3),
                  loss="categorical_crossentropy", metrics=list(metrics))
    for _ in range(steps):
        model.train_on_batch(*data)
    return model


def as_json(obj):
    return json.loads(json.dumps(obj))


def same_weights(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    return len(wa) == len(wb) and all(np.array_equal(x, y) for x, y in zip(wa, wb))


def same_optimizer_state(a, b):
    sa, sb = a.get_optimizer_state(), b.get_optimizer_state()
    return (sa["iterations"] == sb["iterations"] and sa["slots"].keys() == sb["slots"].keys()
            and all(np.array_equal(v, sb["slots"][k]) for k, v in sa["slots"].items()))


def assert_continues_identically(original, loaded, data, steps=2):
    for _ in range(steps):
        original.train_on_batch(*data)
        loaded.train_on_batch(*data)
        assert same_weights(original, loaded)
    assert same_optimizer_state(original, loaded)


def no_temp_files(directory, expected):
    assert sorted(os.listdir(directory)) == sorted(expected)


# -- round trips -----------------------------------------------------------
@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("opt", ["adam", "sgd_momentum", "sgd"])
def test_round_trip_with_optimizer(tmp_path, data, suffix, opt):
    optimizer = {"adam": aslnet.optimizers.Adam(2e-3, beta_1=0.8),
                 "sgd_momentum": aslnet.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
                 "sgd": aslnet.optimizers.SGD(0.05)}[opt]
    model = trained(data, optimizer)
    path = tmp_path / f"model{suffix}"
    model.save(path)
    no_temp_files(tmp_path, [path.name])
    loaded = load_model(path)

    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]
    assert [type(l) for l in loaded.layers] == [type(l) for l in model.layers]
    assert loaded.name == model.name
    assert as_json(loaded.get_config()) == as_json(model.get_config())
    assert [v.name for v in loaded.weights] == [v.name for v in model.weights]
    assert same_weights(model, loaded)
    assert np.array_equal(model.predict(data[0], verbose=0), loaded.predict(data[0], verbose=0))

    assert loaded.loss == model.loss
    assert loaded.compiled_metrics == model.compiled_metrics
    assert type(loaded.optimizer) is type(model.optimizer)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert same_optimizer_state(model, loaded)
    assert_continues_identically(model, loaded, data)


@pytest.mark.parametrize("suffix", [".h5", ".aslnet"])
def test_round_trip_without_optimizer(tmp_path, data, suffix):
    model = trained(data)
    path = tmp_path / f"model{suffix}"
    model.save(path, include_optimizer=False)
    with h5py.File(path, "r") as f:
        assert "training_config" not in f.attrs and "optimizer_weights" not in f
    with pytest.warns(UserWarning, match="not\\* compiled"):
        loaded = load_model(path)
    assert loaded.optimizer is None and loaded.loss is None
    assert same_weights(model, loaded)
    assert np.array_equal(model.predict(data[0], verbose=0), loaded.predict(data[0], verbose=0))
    # compiled again with the same optimizer (fresh state), it trains like a fresh copy
    loaded.compile(aslnet.optimizers.Adam(1e-3), "categorical_crossentropy")
    loaded.train_on_batch(*data)


def test_load_compile_false(tmp_path, data):
    model = trained(data)
    model.save(tmp_path / "m.h5")
    loaded = load_model(tmp_path / "m.h5", compile=False)
    assert loaded.optimizer is None and loaded.loss is None
    assert np.array_equal(model.predict(data[0], verbose=0), loaded.predict(data[0], verbose=0))


def test_uncompiled_and_untrained_models(tmp_path, data):
    model = small_model()
    model.save(tmp_path / "a.h5")                      # never compiled
    with pytest.warns(UserWarning):
        a = load_model(tmp_path / "a.h5")
    assert same_weights(model, a)
    model.compile("adam", "sparse_categorical_crossentropy")      # compiled, no step yet
    model.save(tmp_path / "b.h5")
    with h5py.File(tmp_path / "b.h5", "r") as f:
        assert "training_config" in f.attrs and "optimizer_weights" not in f
    b = load_model(tmp_path / "b.h5")
    assert b.loss == "sparse_categorical_crossentropy" and b.compiled_metrics == []
    labels = data[1].argmax(1)
    model.train_on_batch(data[0], labels)
    b.train_on_batch(data[0], labels)
    assert same_weights(model, b)


def test_trainable_flags_preserved(tmp_path, data):
    model = small_model(extra_dense=True)
    model.get_layer("conv2d").trainable = False
    model.get_layer("batch_normalization").trainable = False
    model.get_layer("re_lu").trainable = False
    model = trained(data, model=model)
    frozen = [w.copy() for w in model.get_layer("conv2d").get_weights()]
    model.save(tmp_path / "m.h5")
    loaded = load_model(tmp_path / "m.h5")
    assert [l.trainable for l in loaded.layers[1:]] == [l.trainable for l in model.layers[1:]]
    assert [l.trainable for l in loaded.layers[1:]] == [False, False, False, True, True, True]
    assert len(loaded.trainable_weights) == len(model.trainable_weights) == 4
    with h5py.File(tmp_path / "m.h5", "r") as f:
        cfg = json.loads(f.attrs["model_config"])
        flags = {l["name"]: l["config"].get("trainable") for l in cfg["config"]["layers"]}
        assert flags["conv2d"] is False and flags["dense"] is True
        names = [n.decode() for n in f["optimizer_weights"].attrs["weight_names"]]
        assert not any("conv2d/" in n or "batch_normalization/" in n for n in names)
    assert_continues_identically(model, loaded, data)
    for w, w0 in zip(loaded.get_layer("conv2d").get_weights(), frozen):
        assert np.array_equal(w, w0)


def test_sequential_round_trip(tmp_path, data):
    model = Sequential([L.Input((32, 32, 3)), L.Conv2D(2, 3, strides=2, padding="same"),
                        L.Flatten(), L.Dense(3, activation="softmax")])
    model = trained(data, model=model)
    model.save(tmp_path / "s.h5")
    with h5py.File(tmp_path / "s.h5", "r") as f:
        cfg = json.loads(f.attrs["model_config"])
        assert cfg["class_name"] == "Sequential"
        assert [l["class_name"] for l in cfg["config"]["layers"]] == [
            "InputLayer", "Conv2D", "Flatten", "Dense"]
        # Keras's Sequential.layers hides the input layer
        assert [n.decode() for n in f["model_weights"].attrs["layer_names"]] == [
            "conv2d", "flatten", "dense"]
    loaded = load_model(tmp_path / "s.h5")
    assert isinstance(loaded, Sequential)
    assert np.array_equal(model.predict(data[0], verbose=0), loaded.predict(data[0], verbose=0))
    assert_continues_identically(model, loaded, data)


def test_all_layer_kinds_round_trip(tmp_path, data):
    inp = L.Input((32, 32, 3), name="img")
    x = L.ZeroPadding2D(((0, 1), (0, 1)))(inp)
    x = L.Conv2D(4, (3, 3), strides=(2, 2), use_bias=False, activation="relu")(x)
    x = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(x)
    x = L.BatchNormalization(momentum=0.9, epsilon=1e-5)(x)
    x = L.ReLU()(x)
    x = L.Activation("relu6")(x)
    x = L.GlobalMaxPooling2D(keepdims=True)(x)
    x = L.Dropout(0.0)(x)
    x = L.Reshape((-1,))(x)
    x = L.Dense(3, activation="softmax", name="out")(x)
    model = Model(inp, x, name="kinds")
    model.save(tmp_path / "k.h5")
    loaded = load_model(tmp_path / "k.h5", compile=False)
    assert as_json(loaded.get_config()) == as_json(model.get_config())
    assert np.array_equal(model.predict(data[0], verbose=0), loaded.predict(data[0], verbose=0))


# -- writes are atomic ---------------------------------------------------------
def _crash_after(monkeypatch, n):
    real = h5_format._write_array
    calls = []

    def flaky(group, name, value):
        calls.append(name)
        if len(calls) > n:
            raise RuntimeError("simulated crash during save")
        real(group, name, value)

    monkeypatch.setattr(h5_format, "_write_array", flaky)


@pytest.mark.parametrize("what", ["save", "save_weights"])
def test_interrupted_save_keeps_previous_file(tmp_path, data, monkeypatch, what):
    model = trained(data)
    path = tmp_path / "m.h5"
    getattr(model, what)(path)
    before = path.read_bytes()
    model.train_on_batch(*data)                       # the next save would differ
    _crash_after(monkeypatch, 3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        getattr(model, what)(path)
    assert path.read_bytes() == before
    no_temp_files(tmp_path, ["m.h5"])
    monkeypatch.undo()
    (load_model if what == "save" else lambda p: model.load_weights(p))(path)


def test_interrupted_first_save_leaves_nothing(tmp_path, data, monkeypatch):
    model = trained(data)
    _crash_after(monkeypatch, 0)
    with pytest.raises(RuntimeError):
        model.save(tmp_path / "new.h5")
    no_temp_files(tmp_path, [])


def test_overwrite_false(tmp_path, data):
    model = trained(data)
    path = tmp_path / "m.h5"
    model.save(path, overwrite=False)                 # a new file: fine
    before = path.read_bytes()
    model.train_on_batch(*data)
    with pytest.raises(FileExistsError, match="m.h5"):
        model.save(path, overwrite=False)
    with pytest.raises(FileExistsError):
        model.save_weights(path, overwrite=False)
    assert path.read_bytes() == before
    no_temp_files(tmp_path, ["m.h5"])
    model.save(path)                                  # overwrite=True replaces it
    assert path.read_bytes() != before
    assert same_weights(model, load_model(path))


def test_save_creates_parent_directories_and_keeps_mode(tmp_path, data):
    model = small_model()
    path = tmp_path / "a" / "b" / "m.h5"
    model.save(path)
    assert path.is_file()
    os.chmod(path, 0o640)
    model.save(path)
    assert (os.stat(path).st_mode & 0o777) == 0o640


# -- bad files -------------------------------------------------------------------
def test_corrupt_files(tmp_path, data):
    model = trained(data)
    good = tmp_path / "good.h5"
    model.save(good)
    raw = good.read_bytes()

    cases = {"random.h5": np.random.default_rng(0).bytes(4096), "empty.h5": b"",
             "text.keras": b"this is not a model\n", "truncated.h5": raw[:len(raw) // 2],
             "head.h5": raw[:600]}
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        for load in (load_model, small_model().load_weights):
            with pytest.raises((ValueError, OSError)) as info:
                load(path)
            assert str(path) in str(info.value), (name, info.value)

    missing = tmp_path / "missing.h5"
    with pytest.raises(OSError, match="missing.h5"):
        load_model(missing)
    with pytest.raises(OSError, match="directory"):
        load_model(tmp_path)


def test_corrupt_file_error_is_value_and_os_error(tmp_path):
    path = tmp_path / "x.h5"
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError):
        load_model(path)
    with pytest.raises(OSError):
        load_model(path)


def test_file_without_model_config(tmp_path, data):
    model = trained(data)
    model.save_weights(tmp_path / "w.h5")
    with pytest.raises(ValueError, match="No model config.*weights only"):
        load_model(tmp_path / "w.h5")
    with h5py.File(tmp_path / "e.h5", "w") as f:
        f.attrs["keras_version"] = "2.6.0"
    with pytest.raises(ValueError, match="e.h5"):
        load_model(tmp_path / "e.h5")
    with pytest.raises(ValueError, match="no weights"):
        model.load_weights(tmp_path / "e.h5")


def test_bad_model_config(tmp_path, data):
    model = trained(data)
    path = tmp_path / "m.h5"
    model.save(path)
    with h5py.File(path, "r") as f:
        cfg = json.loads(f.attrs["model_config"])

    def write(config):
        with h5py.File(path, "a") as f:
            f.attrs["model_config"] = json.dumps(config).encode()

    # a layer with two inputs: not a chain
    branched = json.loads(json.dumps(cfg))
    branched["config"]["layers"][-1]["inbound_nodes"] = [[["re_lu", 0, 0, {}],
                                                          ["global_average_pooling2d", 0, 0, {}]]]
    write(branched)
    with pytest.raises(NotImplementedError, match="chain"):
        load_model(path)
    # an unknown layer class
    unknown = json.loads(json.dumps(cfg))
    unknown["config"]["layers"][3]["class_name"] = "GaussianNoise"
    write(unknown)
    with pytest.raises(ValueError, match="Unknown layer: GaussianNoise"):
        load_model(path)
    # a Keras option aslnet does not implement
    dilated = json.loads(json.dumps(cfg))
    dilated["config"]["layers"][1]["config"]["groups"] = 2
    write(dilated)
    with pytest.raises(ValueError, match="groups"):
        load_model(path)
    # not JSON
    with h5py.File(path, "a") as f:
        f.attrs["model_config"] = b"{not json"
    with pytest.raises(ValueError, match="m.h5"):
        load_model(path)


# -- the native format: the same HDF5 layout plus an integrity header ------------------
def test_native_format_is_the_h5_layout_plus_integrity_header(tmp_path, data):
    model = trained(data)
    model.save(tmp_path / "m.h5")
    model.save(tmp_path / "m.aslnet")
    with h5py.File(tmp_path / "m.h5", "r") as keras_file, \
            h5py.File(tmp_path / "m.aslnet", "r") as native:
        assert keras_file.userblock_size == 0                 # plain Keras h5
        assert native.userblock_size == 512
        assert dict(native.attrs) == dict(keras_file.attrs)
        names = []
        keras_file.visit(names.append)
        native_names = []
        native.visit(native_names.append)
        assert native_names == names
        for name in names:
            if isinstance(keras_file[name], h5py.Dataset):
                assert np.array_equal(native[name][()], keras_file[name][()])
    assert (tmp_path / "m.aslnet").read_bytes()[:8] == b"ASLNET\x00\x01"
    assert not (tmp_path / "m.h5").read_bytes().startswith(b"ASLNET")


@pytest.mark.parametrize("what", ["save", "save_weights"])
def test_native_format_detects_corruption(tmp_path, data, what):
    model = trained(data)
    path = tmp_path / "m.aslnet"
    getattr(model, what)(path)
    load = load_model if what == "save" else small_model().load_weights
    raw = bytearray(path.read_bytes())
    kernel = model.get_layer("dense").get_weights()[0].tobytes()
    at = bytes(raw).index(kernel)                     # a weight value, not HDF5 metadata
    raw[at] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupt.*SHA-256"):
        load(path)
    raw[at] ^= 0x01
    path.write_bytes(bytes(raw[:-100]))
    with pytest.raises(OSError, match="truncated"):
        load(path)
    path.write_bytes(bytes(raw))
    load(path)


def test_h5py_file_objects(tmp_path, data):
    model = trained(data)
    with h5py.File(tmp_path / "m.h5", "w") as f:
        saving.save_model(model, f)
    with h5py.File(tmp_path / "m.h5", "r") as f:
        loaded = saving.load_model(f)
    assert same_weights(model, loaded) and same_optimizer_state(model, loaded)


# -- the Keras 2.x h5 layout ---------------------------------------------------------
def test_h5_layout(tmp_path, data):
    model = trained(data)
    path = tmp_path / "m.h5"
    model.save(path)
    with h5py.File(path, "r") as f:
        assert f.attrs["keras_version"] == "2.6.0"
        assert f.attrs["backend"] == "tensorflow"
        cfg = json.loads(f.attrs["model_config"])
        assert cfg["class_name"] == "Functional"
        c = cfg["config"]
        assert c["name"] == "model"
        assert c["input_layers"] == [["input_1", 0, 0]]
        assert c["output_layers"] == [["dense", 0, 0]]
        layers = c["layers"]
        assert [l["name"] for l in layers] == [l.name for l in model.layers]
        assert layers[0] == {"class_name": "InputLayer",
                             "config": {"batch_input_shape": [None, 32, 32, 3],
                                        "dtype": "float32", "sparse": False, "ragged": False,
                                        "name": "input_1"},
                             "name": "input_1", "inbound_nodes": []}
        for prev, layer in zip(layers, layers[1:]):
            assert layer["inbound_nodes"] == [[[prev["name"], 0, 0, {}]]]
            assert set(layer) == {"class_name", "config", "name", "inbound_nodes"}
            assert layer["config"]["dtype"] == "float32"
            assert layer["config"]["name"] == layer["name"]
        conv = layers[1]["config"]
        assert list(conv) == [
            "name", "trainable", "dtype", "filters", "kernel_size", "strides", "padding",
            "data_format", "dilation_rate", "groups", "activation", "use_bias",
            "kernel_initializer", "bias_initializer", "kernel_regularizer", "bias_regularizer",
            "activity_regularizer", "kernel_constraint", "bias_constraint"]
        assert conv["kernel_size"] == [3, 3] and conv["strides"] == [1, 1]
        assert conv["data_format"] == "channels_last" and conv["dilation_rate"] == [1, 1]
        assert conv["kernel_initializer"] == {"class_name": "GlorotUniform",
                                              "config": {"seed": None}}
        bn = layers[2]["config"]
        assert bn["axis"] == [3] and bn["momentum"] == 0.99 and bn["epsilon"] == 0.001
        assert bn["center"] is True and bn["gamma_initializer"]["class_name"] == "Ones"
        assert layers[3]["config"]["max_value"] == 6.0
        assert layers[3]["config"]["negative_slope"] == 0.0
        assert layers[4]["config"]["keepdims"] is False
        dense = layers[5]["config"]
        assert dense["units"] == 3 and dense["activation"] == "softmax"

        tc = json.loads(f.attrs["training_config"])
        assert tc["loss"] == "categorical_crossentropy"
        assert tc["metrics"] == [{"class_name": "MeanMetricWrapper",
                                  "config": {"name": "accuracy", "dtype": "float32",
                                             "fn": "categorical_accuracy"}}]
        assert tc["weighted_metrics"] is None and tc["loss_weights"] is None
        assert tc["optimizer_config"] == {
            "class_name": "Adam",
            "config": {"name": "Adam", "learning_rate": 0.001, "decay": 0.0, "beta_1": 0.9,
                       "beta_2": 0.999, "epsilon": 1e-07, "amsgrad": False}}

        mw = f["model_weights"]
        assert list(mw.attrs["layer_names"]) == [l.name.encode() for l in model.layers]
        assert mw.attrs["layer_names"].dtype.kind == "S"
        assert mw.attrs["backend"] == "tensorflow" and mw.attrs["keras_version"] == "2.6.0"
        assert list(mw["conv2d"].attrs["weight_names"]) == [b"conv2d/kernel:0",
                                                            b"conv2d/bias:0"]
        assert list(mw["batch_normalization"].attrs["weight_names"]) == [
            b"batch_normalization/gamma:0", b"batch_normalization/beta:0",
            b"batch_normalization/moving_mean:0", b"batch_normalization/moving_variance:0"]
        assert len(mw["input_1"].attrs["weight_names"]) == 0
        assert len(mw["re_lu"].attrs["weight_names"]) == 0
        for layer in model.layers:
            for var in layer.weights:
                dset = mw[f"{layer.name}/{var.name}"]
                assert dset.dtype == np.float32
                assert np.array_equal(dset[()], var.numpy())
        assert np.array_equal(
            mw["batch_normalization/batch_normalization/moving_mean:0"][()],
            model.get_layer("batch_normalization").get_weights()[2])

        ow = f["optimizer_weights"]
        names = [n.decode() for n in ow.attrs["weight_names"]]
        trainable = [v.name[:-2] for v in model.trainable_weights]
        assert names == (["Adam/iter:0"] + [f"Adam/{n}/m:0" for n in trainable]
                         + [f"Adam/{n}/v:0" for n in trainable])
        assert ow["Adam/iter:0"][()] == 2 and ow["Adam/iter:0"].dtype == np.int64
        state = model.get_optimizer_state()["slots"]
        assert np.array_equal(ow["Adam/conv2d/kernel/m:0"][()], state[("conv2d", 0, 0)])
        assert np.array_equal(ow["Adam/dense/bias/v:0"][()], state[("dense", 1, 1)])


def test_sgd_optimizer_layout(tmp_path, data):
    model = trained(data, aslnet.optimizers.SGD(0.1, momentum=0.5))
    model.save(tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r") as f:
        tc = json.loads(f.attrs["training_config"])
        assert tc["optimizer_config"] == {
            "class_name": "SGD", "config": {"name": "SGD", "learning_rate": 0.1, "decay": 0.0,
                                            "momentum": 0.5, "nesterov": False}}
        names = [n.decode() for n in f["optimizer_weights"].attrs["weight_names"]]
        assert names[0] == "SGD/iter:0" and names[1] == "SGD/conv2d/kernel/momentum:0"


def test_long_layer_name_lists_are_chunked(tmp_path):
    group_path = tmp_path / "attrs.h5"
    names = [f"layer_{i:05d}_{'x' * 40}".encode() for i in range(3000)]
    with h5py.File(group_path, "w") as f:
        h5_format.save_attributes(f, "layer_names", names)
        assert "layer_names" not in f.attrs and "layer_names0" in f.attrs
        assert h5_format.load_attributes(f, "layer_names") == [n.decode() for n in names]


# -- save_weights / load_weights -------------------------------------------------------
def test_save_weights_layout_and_round_trip(tmp_path, data):
    model = trained(data)
    path = tmp_path / "w.h5"
    model.save_weights(path)
    no_temp_files(tmp_path, ["w.h5"])
    with h5py.File(path, "r") as f:
        assert list(f.attrs["layer_names"]) == [l.name.encode() for l in model.layers]
        assert f.attrs["backend"] == "tensorflow" and f.attrs["keras_version"] == "2.6.0"
        assert "model_config" not in f.attrs and "model_weights" not in f
        assert list(f["dense"].attrs["weight_names"]) == [b"dense/kernel:0", b"dense/bias:0"]
        assert np.array_equal(f["dense/dense/kernel:0"][()],
                              model.get_layer("dense").get_weights()[0])

    other = small_model()                       # same architecture, other names (conv2d_1...)
    assert [l.name for l in other.layers] != [l.name for l in model.layers]
    assert not same_weights(model, other)
    other.load_weights(path)                    # topological
    assert same_weights(model, other)
    assert np.array_equal(model.predict(data[0], verbose=0), other.predict(data[0], verbose=0))


def test_load_weights_from_model_file_and_native_suffix(tmp_path, data):
    model = trained(data)
    model.save(tmp_path / "full.h5")
    model.save_weights(tmp_path / "weights.aslnet")
    for name in ("full.h5", "weights.aslnet"):
        other = small_model()
        other.load_weights(tmp_path / name)
        assert same_weights(model, other)


def test_load_weights_into_compiled_model_updates_predictions(tmp_path, data):
    model = trained(data)
    model.save_weights(tmp_path / "w.h5")
    other = trained(data, aslnet.optimizers.SGD(0.5))     # its C network already built
    before = other.predict(data[0], verbose=0)
    other.load_weights(tmp_path / "w.h5")
    after = other.predict(data[0], verbose=0)
    assert not np.array_equal(before, after)
    assert np.array_equal(after, model.predict(data[0], verbose=0))


def test_load_weights_mismatch(tmp_path, data):
    model = trained(data)
    path = tmp_path / "w.h5"
    model.save_weights(path)

    wrong_shape = small_model(units=4)
    kept = wrong_shape.get_weights()
    with pytest.raises(ValueError, match="shape"):
        wrong_shape.load_weights(path)
    assert same_weights_list(wrong_shape.get_weights(), kept)   # nothing half-loaded

    more_layers = small_model(extra_dense=True)
    kept = more_layers.get_weights()
    with pytest.raises(ValueError, match="containing 3 layers into a model with 4 layers"):
        more_layers.load_weights(path)
    assert same_weights_list(more_layers.get_weights(), kept)

    no_bias = Model(*_chain(L.Input((32, 32, 3)), L.Conv2D(4, 3, use_bias=False),
                            L.BatchNormalization(), L.ReLU(6.0), L.GlobalAveragePooling2D(),
                            L.Dense(3, activation="softmax")))
    with pytest.raises(ValueError, match="expects 1 weights, but the saved weights have 2"):
        no_bias.load_weights(path)


def test_load_weights_by_name(tmp_path, data):
    model = trained(data)
    path = tmp_path / "w.h5"
    model.save_weights(path)
    other = small_model(units=4)                   # conv2d_1 ...: no names match
    kept = other.get_weights()
    saving.load_weights(other, path, by_name=True)
    assert same_weights_list(other.get_weights(), kept)
    aslnet.clear_session()
    same_names = small_model(units=4)              # conv2d, ..., dense (3 -> 4 units)
    with pytest.raises(ValueError, match="shape"):
        saving.load_weights(same_names, path, by_name=True)
    with pytest.warns(UserWarning, match="Skipping"):
        saving.load_weights(same_names, path, by_name=True, skip_mismatch=True)
    assert np.array_equal(same_names.get_layer("conv2d").get_weights()[0],
                          model.get_layer("conv2d").get_weights()[0])


def same_weights_list(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def _chain(inp, *layers):
    x = inp
    for layer in layers:
        x = layer(x)
    return inp, x


# -- MobileNet, as in the tutorial ------------------------------------------------------
def test_mobilenet_round_trip(tmp_path):
    mobilenet = pytest.importorskip("aslnet.applications.mobilenet")
    mobile = mobilenet.MobileNet(alpha=0.25, input_shape=(64, 64, 3), weights=None)
    x = mobile.layers[-6].output
    model = Model(inputs=mobile.input, outputs=L.Dense(3, activation="softmax")(x))
    model.freeze(upto=-23)
    rng = np.random.default_rng(1)
    xb = rng.random((4, 64, 64, 3), dtype=np.float32)
    yb = np.eye(3, dtype=np.float32)[[0, 1, 2, 1]]
    model.compile(aslnet.optimizers.Adam(1e-3), "categorical_crossentropy", ["accuracy"])
    model.train_on_batch(xb, yb)

    path = tmp_path / "mobilenet.h5"
    model.save(path)
    loaded = load_model(path)
    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]
    assert [l.trainable for l in loaded.layers[1:]] == [l.trainable for l in model.layers[1:]]
    assert np.array_equal(model.predict(xb, verbose=0), loaded.predict(xb, verbose=0))
    with h5py.File(path, "r") as f:
        layers = json.loads(f.attrs["model_config"])["config"]["layers"]
        pad = next(l for l in layers if l["name"] == "conv1_pad")
        assert pad["class_name"] == "ZeroPadding2D"
        assert pad["inbound_nodes"] == [[["input_1", 0, 0, {}]]]
        assert pad["config"]["padding"] == [[0, 1], [0, 1]]
        dw = next(l for l in layers if l["name"] == "conv_dw_1")["config"]
        assert dw["depth_multiplier"] == 1 and "filters" not in dw
        assert f["model_weights/conv1_bn/conv1_bn/moving_mean:0"].shape == (8,)
        assert "model_weights/conv_dw_1/conv_dw_1/depthwise_kernel:0" in f
    assert_continues_identically(model, loaded, (xb, yb), steps=1)

    # the weights file of the same architecture loads topologically into a rebuilt one
    model.save_weights(tmp_path / "w.h5")
    aslnet.clear_session()
    mobile2 = mobilenet.MobileNet(alpha=0.25, input_shape=(64, 64, 3), weights=None)
    rebuilt = Model(mobile2.input, L.Dense(3, activation="softmax")(mobile2.layers[-6].output))
    rebuilt.load_weights(tmp_path / "w.h5")
    assert np.array_equal(model.predict(xb, verbose=0), rebuilt.predict(xb, verbose=0))


# -- Keras itself reads the file (fidelity check; opening in Keras is a later issue) ------
@pytest.mark.keras
def test_keras_loads_the_h5_file(tmp_path, data):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    keras = pytest.importorskip("keras")
    model = small_model()
    model.get_layer("conv2d").trainable = False
    model = trained(data, model=model, steps=3)
    model.save(tmp_path / "m.h5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kmodel = keras.models.load_model(tmp_path / "m.h5")
    assert [l.name for l in kmodel.layers] == [l.name for l in model.layers]
    assert [l.trainable for l in kmodel.layers[1:]] == [l.trainable for l in model.layers[1:]]
    np.testing.assert_allclose(kmodel.predict(data[0], verbose=0),
                               model.predict(data[0], verbose=0), rtol=1e-5, atol=1e-6)
    assert int(kmodel.optimizer.iterations.numpy()) == 3


@pytest.mark.keras
def test_keras_loads_a_saved_mobilenet(tmp_path):
    """The tutorial's model as aslnet saves it (conv1_pad, DepthwiseConv2D, the new
    head, frozen layers, Adam's state) opens in Keras and computes the same."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    keras = pytest.importorskip("tensorflow").keras
    from aslnet.applications import mobilenet
    mobile = mobilenet.MobileNet(alpha=0.25, input_shape=(64, 64, 3), weights=None)
    model = Model(mobile.input, L.Dense(3, activation="softmax")(mobile.layers[-6].output))
    for layer in model.layers[:-23]:
        layer.trainable = False
    rng = np.random.RandomState(0)
    x = rng.uniform(-1, 1, (4, 64, 64, 3)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
    model.compile(aslnet.optimizers.Adam(1e-3), "categorical_crossentropy")
    model.train_on_batch(x, y)
    model.save(tmp_path / "m.h5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kmodel = keras.models.load_model(tmp_path / "m.h5")
    assert [l.name for l in kmodel.layers] == [l.name for l in model.layers]
    assert [l.trainable for l in kmodel.layers[1:]] == [l.trainable for l in model.layers[1:]]
    np.testing.assert_allclose(kmodel.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    assert int(kmodel.optimizer.iterations.numpy()) == 1


@pytest.mark.keras
def test_keras3_files_load_or_say_what_to_do(tmp_path):
    """Keras 3's .keras archive loads (tests/saving/test_keras3.py has the rest); its
    legacy h5 (another config format) is refused with what works instead, and the
    weights of that h5 load into the same model."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    keras = pytest.importorskip("tensorflow").keras
    if not keras.__version__.startswith("3."):
        pytest.skip("Keras 2")
    k = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3),
                          keras.layers.DepthwiseConv2D(3), keras.layers.Flatten(),
                          keras.layers.Dense(2)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        k.save(tmp_path / "m.keras")
        k.save(tmp_path / "m.h5")
    x = np.random.RandomState(0).rand(2, 8, 8, 3).astype(np.float32)
    np.testing.assert_allclose(load_model(tmp_path / "m.keras").predict(x, verbose=0),
                               k.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    with pytest.raises(NotImplementedError, match="saved by Keras 3.*model.keras.*load_weights"):
        load_model(tmp_path / "m.h5")
    model = Sequential([L.Input((8, 8, 3)), L.Conv2D(4, 3), L.DepthwiseConv2D(3),
                        L.Flatten(), L.Dense(2)])
    model.load_weights(tmp_path / "m.h5")
    np.testing.assert_allclose(model.predict(x, verbose=0), k.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.keras
def test_keras3_weights_h5_loads_weights_and_is_no_model(tmp_path):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    keras = pytest.importorskip("tensorflow").keras
    if not keras.__version__.startswith("3."):
        pytest.skip("Keras 2")
    k = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    k.save_weights(tmp_path / "k.weights.h5")
    model = Sequential([L.Input((4,)), L.Dense(2)])
    model.load_weights(tmp_path / "k.weights.h5")
    for a, b in zip(model.get_weights(), k.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(saving.ModelFileError, match="Keras 3's .weights.h5 layout.*"
                                                    "weights only.*model.load_weights"):
        load_model(tmp_path / "k.weights.h5")


def test_a_corrupt_iteration_count_gives_a_fresh_optimizer_with_a_warning(tmp_path):
    model = small_model()
    model.compile(aslnet.optimizers.Adam(1e-3), "categorical_crossentropy")
    x = np.random.RandomState(0).rand(4, 32, 32, 3).astype(np.float32)
    model.train_on_batch(x, np.eye(3, dtype=np.float32)[[0, 1, 2, 0]])
    model.save(tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r+") as f:
        g = f["optimizer_weights"]
        name = h5_format.load_attributes(g, "weight_names")[0]
        g[name][()] = -5
    with pytest.warns(UserWarning, match="iteration count is -5"):
        loaded = load_model(tmp_path / "m.h5")
    assert loaded.get_optimizer_state()["iterations"] == 0
