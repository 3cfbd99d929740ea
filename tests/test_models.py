"""The Keras-shaped Model: structure, summary, freezing, training loop, the
frozen-trunk cache (exactness and switching off), errors."""
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


def test_structure_and_summary(capsys):
    model = small_model()
    assert model.layers[0].name.startswith("input")
    assert model.output_shape == (None, 3)
    model.summary()
    out = capsys.readouterr().out
    total = model.count_params()
    assert f"Total params: {total:,}" in out
    # BN moving statistics are never trainable (2 per channel: 8 + 8 + 16 channels)
    assert f"Non-trainable params: {2 * (8 + 8 + 16):,}" in out
    model.freeze(upto=-2)        # only GAP and Dense trainable
    model.summary()
    out = capsys.readouterr().out
    dense = model.layers[-1].count_params()
    assert f"Trainable params: {dense:,}" in out
    assert [l.trainable for l in model.layers[-2:]] == [True, True]
    assert not any(l.trainable for l in model.layers[:-2])


def test_get_set_weights_keras_order():
    model = small_model()
    weights = model.get_weights()
    assert [w.shape for w in weights[:5]] == [(3, 3, 3, 8), (8,), (8,), (8,), (8,)]
    twin = small_model(seed=5)
    twin.set_weights(weights)
    x, _ = data()
    np.testing.assert_array_equal(twin.predict(x, verbose=0), model.predict(x, verbose=0))
    with pytest.raises(ValueError, match="expects"):
        twin.set_weights(weights[:-1])


def test_set_weights_after_predict_is_seen_by_the_core():
    model = small_model()
    x, _ = data()
    before = model.predict(x, verbose=0)
    dense = model.layers[-1]
    k, b = dense.get_weights()
    dense.set_weights([k * 2, b + 1])
    assert not np.allclose(model.predict(x, verbose=0), before)


def test_fit_history_and_evaluate():
    model = small_model()
    x, y = data()
    model.compile(optimizer=Adam(1e-2), loss="categorical_crossentropy", metrics=["accuracy"])
    h = model.fit(x, y, batch_size=8, epochs=3, validation_data=(x, y), verbose=0)
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(h.history["loss"]) == 3 and h.epoch == [0, 1, 2]
    loss, acc = model.evaluate(x, y, verbose=0)
    assert loss == pytest.approx(h.history["val_loss"][-1], rel=1e-5)
    p = model.predict(x, verbose=0)
    ref = -np.mean(np.sum(y * np.log(np.clip(p, 1e-7, 1 - 1e-7)), axis=1))
    assert loss == pytest.approx(ref, rel=1e-5)
    assert acc == pytest.approx(np.mean(p.argmax(1) == y.argmax(1)))


def test_sparse_labels_equal_one_hot():
    x, y = data()
    a, b = small_model(), small_model()
    a.compile(SGD(0.1), "categorical_crossentropy")
    b.compile(SGD(0.1), "sparse_categorical_crossentropy")
    la = a.train_on_batch(x, y)
    lb = b.train_on_batch(x, y.argmax(1))
    assert la == lb
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


@pytest.mark.parametrize("shuffle", [False, True])
def test_trunk_cache_gives_exactly_the_results_of_recomputing(shuffle):
    x, y = data(n=30)
    runs = []
    for cache_bytes in (1 << 30, 0):
        model = small_model()
        model.freeze(upto=-4)          # trunk: everything below the last BN
        model.trunk_cache_bytes = cache_bytes
        model.compile(Adam(1e-2), "categorical_crossentropy", metrics=["accuracy"])
        aslnet.set_random_seed(7)
        h = model.fit(x, y, batch_size=8, epochs=3, shuffle=shuffle, validation_data=(x, y),
                      verbose=0)
        runs.append((model, h.history))
    (cached, hc), (plain, hp) = runs
    assert hc == hp
    for wc, wp in zip(cached.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(wc, wp)


def test_trunk_cache_is_used_and_switches_off():
    x, y = data(n=16)
    model = small_model()
    model.freeze(upto=-4)
    model.compile(Adam(1e-2), "categorical_crossentropy")
    model.fit(x, y, batch_size=8, epochs=3, verbose=0)
    net = model._net
    first_conv = model._core_index[model.layers[2].name][0]
    fwd, _ = net.layer_calls(first_conv)
    assert fwd == 2                    # 2 batches, once: epochs 2 and 3 use the cache

    model = small_model(dropout=0.5)   # dropout in the trunk: not deterministic
    model.freeze(upto=-1)
    model.compile(Adam(1e-2), "categorical_crossentropy")
    model.fit(x, y, batch_size=8, epochs=3, verbose=0)
    fwd, _ = model._net.layer_calls(model._core_index[model.layers[2].name][0])
    assert fwd == 6


def _image_folders(root, per_class, classes=3):
    """classes folders of per_class random 16x16 PNGs under root."""
    from PIL import Image
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / str(c)).mkdir()
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(
                root / str(c) / f"{i}.png")


def test_trunk_cache_off_with_augmentation(tmp_path):
    from aslnet.preprocessing.image import ImageDataGenerator
    _image_folders(tmp_path, 4)
    counts = {}
    for flip in (False, True):
        gen = ImageDataGenerator(rescale=1 / 255, horizontal_flip=flip)
        it = gen.flow_from_directory(str(tmp_path), target_size=(16, 16), batch_size=4, seed=1)
        model = small_model()
        model.freeze(upto=-4)
        model.compile(Adam(1e-2), "categorical_crossentropy")
        model.fit(it, epochs=3, verbose=0)
        counts[flip] = model._net.layer_calls(model._core_index[model.layers[2].name][0])[0]
    assert counts == {False: 3, True: 9}


def test_trunk_cache_off_with_a_preprocessing_function_of_unknown_randomness(tmp_path):
    """A preprocessing_function may be random augmentation (noise, cutout): the trunk is
    recomputed every epoch, unless the function is a known preprocess_input or marked
    deterministic."""
    from aslnet.applications.mobilenet import preprocess_input
    from aslnet.preprocessing.image import ImageDataGenerator, deterministic
    _image_folders(tmp_path, 4)

    def noisy(x):
        return x + np.random.normal(0, 20, x.shape)

    def scaled(x):
        return x / 255.0
    counts = {}
    for name, fn in (("random", noisy), ("preprocess_input", preprocess_input),
                     ("marked", deterministic(scaled))):
        it = ImageDataGenerator(preprocessing_function=fn).flow_from_directory(
            str(tmp_path), target_size=(16, 16), batch_size=4, seed=1)
        model = small_model()
        model.freeze(upto=-4)
        model.compile(Adam(1e-2), "categorical_crossentropy")
        model.fit(it, epochs=3, verbose=0)
        counts[name] = model._net.layer_calls(model._core_index[model.layers[2].name][0])[0]
    assert counts == {"random": 9, "preprocess_input": 3, "marked": 3}


def _fit_cached(x, y, cache_bytes=1 << 30, cache_dir=None, callbacks=None, epochs=3):
    model = small_model()
    model.freeze(upto=-4)
    model.trunk_cache_bytes = cache_bytes
    model.trunk_cache_dir = cache_dir
    model.compile(Adam(1e-2), "categorical_crossentropy", metrics=["accuracy"])
    aslnet.set_random_seed(7)
    h = model.fit(x, y, batch_size=8, epochs=epochs, validation_data=(x, y), verbose=0,
                  callbacks=callbacks)
    return model, h.history


def _open_files_in(directory):
    import os
    fds = "/proc/self/fd"
    return [t for t in (os.readlink(os.path.join(fds, f)) for f in os.listdir(fds)
                        if os.path.exists(os.path.join(fds, f)))
            if t.startswith(str(directory))]


@pytest.mark.skipif(not hasattr(__import__("os"), "preadv"), reason="no os.preadv")
def test_trunk_cache_spills_to_an_unnamed_file_and_cleans_up(tmp_path):
    """The cache is a temporary file in trunk_cache_dir (unlinked: nothing is left behind,
    even on a crash), open during fit, closed after; results equal recomputing."""
    from aslnet.callbacks import Callback
    seen = []

    class Probe(Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(len(_open_files_in(tmp_path)))
    x, y = data(n=30)
    cached, hc = _fit_cached(x, y, cache_dir=tmp_path, callbacks=[Probe()])
    plain, hp = _fit_cached(x, y, cache_bytes=0)
    assert seen == [2, 2, 2]                    # training and validation data
    assert _open_files_in(tmp_path) == [] and list(tmp_path.iterdir()) == []
    assert hc == hp
    for wc, wp in zip(cached.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(wc, wp)
    calls = cached._net.layer_calls(cached._core_index[cached.layers[2].name][0])[0]
    assert calls == 2 * 4                       # each data set through the trunk once


def test_trunk_cache_in_memory_without_disk_room(monkeypatch, tmp_path):
    import shutil
    from collections import namedtuple
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(1 << 30, 1 << 30, 1 << 20))
    x, y = data(n=30)
    cached, hc = _fit_cached(x, y, cache_dir=tmp_path)
    plain, hp = _fit_cached(x, y, cache_bytes=0)
    assert hc == hp
    assert cached._net.layer_calls(cached._core_index[cached.layers[2].name][0])[0] == 8


@pytest.mark.skipif(not hasattr(__import__("os"), "preadv"), reason="no os.preadv")
def test_trunk_cache_write_error_falls_back_to_recomputing(monkeypatch, tmp_path):
    import errno
    import os

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "pwrite", full)
    x, y = data(n=30)
    with pytest.warns(UserWarning, match="cache off"):
        cached, hc = _fit_cached(x, y, cache_dir=tmp_path)
    plain, hp = _fit_cached(x, y, cache_bytes=0)
    assert hc == hp
    for wc, wp in zip(cached.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(wc, wp)
    # every batch recomputed: 4 training + 4 validation batches per epoch
    assert cached._net.layer_calls(cached._core_index[cached.layers[2].name][0])[0] == 24


def test_trunk_cache_reads_no_images_after_the_first_epoch(tmp_path, monkeypatch):
    """With every sample's features cached, an image iterator's batches are not loaded at
    all (only their labels are taken), and the results equal recomputing."""
    from aslnet.preprocessing.image import DirectoryIterator, ImageDataGenerator
    _image_folders(tmp_path, 5)
    loads = []
    real = DirectoryIterator._get_batches_of_transformed_samples
    monkeypatch.setattr(DirectoryIterator, "_get_batches_of_transformed_samples",
                        lambda self, ia, r: loads.append(len(ia)) or real(self, ia, r))
    runs = []
    for cache_bytes in (1 << 30, 0):
        gen = ImageDataGenerator(rescale=1 / 255)
        it = gen.flow_from_directory(str(tmp_path), target_size=(16, 16), batch_size=4, seed=1)
        model = small_model()
        model.freeze(upto=-4)
        model.trunk_cache_bytes = cache_bytes
        model.compile(Adam(1e-2), "categorical_crossentropy", metrics=["accuracy"])
        loads.clear()
        h = model.fit(it, epochs=3, verbose=0)
        runs.append((model, h.history, sum(loads)))
    (cached, hc, n_cached), (plain, hp, n_plain) = runs
    assert (n_cached, n_plain) == (15, 45)
    assert hc == hp
    for wc, wp in zip(cached.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(wc, wp)


def test_bad_input_gives_clear_errors():
    model = small_model()
    with pytest.raises(ValueError, match="batch axis"):
        model.predict(np.zeros((16, 16, 3), np.float32), verbose=0)
    with pytest.raises(ValueError, match="expects input shape"):
        model.predict(np.zeros((2, 8, 8, 3), np.float32), verbose=0)
    with pytest.raises(RuntimeError, match="compile"):
        model.fit(*data(), verbose=0)
    model.compile("adam", "categorical_crossentropy")
    with pytest.raises(ValueError, match="targets"):
        model.fit(data()[0], np.zeros((24, 5)), verbose=0)
    with pytest.raises(ValueError, match="Unsupported loss"):
        model.compile("adam", "mse")
    # NaN inputs are computed, not crashed on, and show in the loss
    x, y = data()
    x[0, 0, 0, 0] = np.nan
    assert np.isnan(model.train_on_batch(x, y))


def test_load_pretrained_is_the_tutorial_model(shared_weights_dir):
    aslnet.clear_session()          # fresh auto-names, as in a new Keras session
    model = aslnet.load_pretrained("mobilenet", num_classes=10, weights_dir=shared_weights_dir)
    assert len(model.layers) == 89
    assert model.layers[-2].name == "global_average_pooling2d"
    assert sum(l.trainable for l in model.layers) == 23
    assert model.count_params() == 3_239_114
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    assert trainable == 1_873_930


# -- Keras semantics of the API (each a behaviour a Keras user relies on) -------------
def _tiny(units=4):
    """Dense(softmax) on 4 features: bias b gives every sample p = softmax(b)."""
    m = aslnet.models.Sequential([L.Input((4,)), L.Dense(units, activation="softmax")])
    m.set_weights([np.zeros((4, units), np.float32), np.arange(units, dtype=np.float32)])
    return m


def test_duplicate_layer_names_are_refused():
    inp = L.Input((4,))
    with pytest.raises(ValueError, match="unique.*'d'"):
        Model(inp, L.Dense(2, name="d")(L.Dense(5, name="d")(inp)))


def test_model_trainable_false_freezes_every_layer():
    x, y = data(8)
    model = small_model()
    model.compile(Adam(1e-2), "categorical_crossentropy")
    model.trainable = False
    assert not model.trainable and model.trainable_weights == []
    w0 = model.get_weights()
    model.train_on_batch(x, y)
    for a, b in zip(w0, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    model.trainable = True
    assert all(layer.trainable for layer in model.layers)


def test_compile_refuses_what_it_would_ignore():
    model = small_model()
    with pytest.raises(TypeError, match="metric"):
        model.compile("adam", "categorical_crossentropy", metric=["accuracy"])
    with pytest.raises(NotImplementedError, match="loss_weights"):
        model.compile("adam", "categorical_crossentropy", loss_weights=[2.0])
    model.compile("adam", "categorical_crossentropy", run_eagerly=False, jit_compile="auto")
    keras = pytest.importorskip("tensorflow").keras
    for loss in (keras.losses.CategoricalCrossentropy(label_smoothing=0.1),
                 keras.losses.CategoricalCrossentropy(from_logits=True)):
        with pytest.raises(NotImplementedError, match="label_smoothing|from_logits"):
            model.compile("adam", loss)
    model.compile("adam", keras.losses.CategoricalCrossentropy())
    assert model.loss == "categorical_crossentropy"


def test_steps_per_epoch_goes_on_where_the_last_epoch_stopped():
    """Keras: with steps_per_epoch below the data, each epoch takes the next batches
    (with SGD(0) the loss of batch k is -log softmax(b)[k], so it tells the batch)."""
    x = np.zeros((16, 4), np.float32)
    y = np.eye(4, dtype=np.float32)[np.repeat(np.arange(4), 4)]
    m = _tiny()
    m.compile(SGD(0.0), "categorical_crossentropy")
    h = m.fit(x, y, batch_size=4, steps_per_epoch=1, epochs=5, shuffle=False, verbose=0)
    logp = np.log(np.exp(np.arange(4)) / np.exp(np.arange(4)).sum())
    np.testing.assert_allclose(h.history["loss"], -logp[[0, 1, 2, 3, 0]], rtol=1e-5)


def test_generators_and_datasets_without_steps():
    x, y = data(12)
    model = small_model()
    model.compile(SGD(0.0), "categorical_crossentropy", metrics=["accuracy"])
    expected = model.evaluate(x, y, batch_size=4, verbose=0)

    def gen():
        for i in range(0, 12, 4):
            yield x[i:i + 4], y[i:i + 4]
    np.testing.assert_allclose(model.evaluate(gen(), verbose=0), expected, rtol=1e-6)
    assert model.predict((b for b, _ in gen()), verbose=0).shape == (12, 3)
    # a generator is one pass: the second epoch has no data -> warning, one epoch kept
    with pytest.warns(UserWarning, match="ran out of data"):
        h = model.fit(gen(), epochs=3, verbose=0)
    assert h.epoch == [0]
    tf = pytest.importorskip("tensorflow")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)        # re-iterable, len 3
    h = model.fit(ds, epochs=2, verbose=0)
    h2 = model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    np.testing.assert_allclose(h.history["loss"], h2.history["loss"], rtol=1e-6)
    np.testing.assert_allclose(model.predict(tf.constant(x), verbose=0),
                               model.predict(x, verbose=0))


def test_array_likes_are_arrays():
    torch = pytest.importorskip("torch")
    x, y = data(8)
    model = small_model()
    model.compile(SGD(0.0), "categorical_crossentropy")
    np.testing.assert_array_equal(model.predict(torch.from_numpy(x), verbose=0),
                                  model.predict(x, verbose=0))
    assert model.evaluate(torch.from_numpy(x), torch.from_numpy(y), verbose=0) == \
        model.evaluate(x, y, verbose=0)


def test_validation_data_forms_and_validation_split():
    x, y = data(20)
    model = small_model().freeze(upto=-1)         # fit changes nothing: SGD(0), frozen BN
    model.compile(SGD(0.0), "categorical_crossentropy")
    ref = model.evaluate(x[16:], y[16:], verbose=0)
    for vd in ((x[16:], y[16:]), [x[16:], y[16:]], (x[16:], y[16:], None)):
        h = model.fit(x, y, validation_data=vd, verbose=0)
        np.testing.assert_allclose(h.history["val_loss"], [ref], rtol=1e-6)
    h = model.fit(x, y, validation_split=0.2, verbose=0)          # the last 20%, as Keras
    np.testing.assert_allclose(h.history["val_loss"], [ref], rtol=1e-6)
    h = model.fit(x, y, validation_data=(x, y), validation_freq=2, epochs=4, verbose=0)
    assert [len(h.history[k]) for k in ("loss", "val_loss")] == [4, 2]
    with pytest.raises(ValueError, match="both class_weight and sample_weight"):
        model.fit(x, y, class_weight={0: 2.0}, sample_weight=np.ones(20), verbose=0)
    for bs in (0, -1, 2.5):
        with pytest.raises(ValueError, match="batch_size"):
            model.fit(x, y, batch_size=bs, verbose=0)


def test_callbacks_see_test_and_predict_hooks():
    calls = []

    class Recorder(aslnet.callbacks.Callback):
        def __getattribute__(self, name):
            if name.startswith("on_"):
                return lambda *a, **k: calls.append(name)
            return super().__getattribute__(name)
    x, y = data(8)
    model = small_model()
    model.compile(SGD(0.0), "categorical_crossentropy")
    model.predict(x, batch_size=4, callbacks=[Recorder()], verbose=0)
    assert calls == ["on_predict_begin"] + ["on_predict_batch_begin",
                                            "on_predict_batch_end"] * 2 + ["on_predict_end"]
    calls.clear()
    model.evaluate(x, y, batch_size=8, callbacks=[Recorder()], verbose=0)
    assert calls == ["on_test_begin", "on_test_batch_begin", "on_test_batch_end",
                     "on_test_end"]
    calls.clear()
    model.fit(x, y, batch_size=8, validation_data=(x, y), callbacks=[Recorder()], verbose=0)
    assert "on_test_batch_end" in calls
    assert calls.index("on_test_end") < calls.index("on_epoch_end")


def test_calls_from_threads_queue_instead_of_failing():
    import threading
    x, y = data(16)
    model = small_model()
    model.compile(Adam(1e-3), "categorical_crossentropy")
    expected = model.predict(x, batch_size=4, verbose=0)
    out, errors = [], []

    def work():
        try:
            for _ in range(5):
                out.append(model.predict(x, batch_size=4, verbose=0))
        except Exception as e:      # pragma: no cover - the failure being tested
            errors.append(e)
    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(out) == 15
    for o in out:
        np.testing.assert_array_equal(o, expected)
    # predict while fit runs in another thread: waits, then sees the trained weights
    t = threading.Thread(target=lambda: model.fit(x, y, epochs=3, verbose=0))
    t.start()
    model.predict(x, verbose=0)
    t.join()
    assert model.history is not None and len(model.history.epoch) == 3


def test_get_layer_out_of_range_says_so():
    model = small_model()
    with pytest.raises(ValueError, match="index 100 but model only has 13 layers"):
        model.get_layer(index=100)
    assert model.get_layer(index=-1) is model.layers[-1]


def test_nesting_a_model_says_how_instead():
    base = small_model()
    with pytest.raises(NotImplementedError, match="Model\\(base.input"):
        base(L.Input((16, 16, 3)))


def test_evaluate_loss_of_a_non_softmax_output_is_keras_s():
    """Keras divides non-softmax outputs by their sum, then clips to [1e-7, 1 - 1e-7]."""
    from aslnet.models import categorical_crossentropy
    p = np.array([[0.5, 0.2, 0.0], [2.0, 1.0, 1.0]], np.float32)
    y = np.eye(3, dtype=np.float32)[[0, 1]]
    np.testing.assert_allclose(categorical_crossentropy(y, p, from_softmax=False),
                               [-np.log(0.5 / 0.7), -np.log(0.25)], rtol=1e-6)
    keras = pytest.importorskip("tensorflow").keras
    np.testing.assert_allclose(categorical_crossentropy(y, p, from_softmax=False),
                               keras.losses.categorical_crossentropy(y, p).numpy(), rtol=1e-6)


# -- batched inference: large early activations one image at a time ------------------
def wide_model(seed=0):
    """Its first activation (96 x 96 x 16 floats, 590 KB per image) is above
    Model._MICRO_BYTES, the next ones below: batched inference splits after the
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
    old = Model._MICRO_BYTES
    Model._MICRO_BYTES = 1 << 60
    model._split_cache = (None,)
    try:
        return fn()
    finally:
        Model._MICRO_BYTES = old
        model._split_cache = (None,)


def test_batched_inference_splits_and_changes_no_result():
    x = np.random.default_rng(2).normal(size=(6, 96, 96, 3)).astype(np.float32)
    model = wide_model()
    split_out = model.predict(x, batch_size=6, verbose=0)
    split = model._micro_split()
    assert split == model._core_index[model.layers[7].name][0]     # after conv_dw's ReLU
    assert model._early is not None
    whole = _whole_batch(model, lambda: model.predict(x, batch_size=6, verbose=0))
    np.testing.assert_array_equal(split_out, whole)
    assert _whole_batch(model, model._micro_split) is None
    assert small_model()._micro_split() is None            # no large activation


def test_the_per_image_network_sees_trained_and_set_weights():
    x = np.random.default_rng(3).normal(size=(4, 96, 96, 3)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
    model = wide_model()
    model.compile(Adam(1e-2), "categorical_crossentropy")
    before = model.predict(x, verbose=0)
    model.train_on_batch(x, y)                 # moves the first conv (in the early part)
    after = model.predict(x, verbose=0)
    assert np.abs(after - before).max() > 1e-4
    np.testing.assert_array_equal(after, _whole_batch(model, lambda: model.predict(x,
                                                                                  verbose=0)))
    w = model.layers[1].get_weights()
    model.layers[1].set_weights([w[0] * 0.5])
    np.testing.assert_array_equal(model.predict(x, verbose=0),
                                  _whole_batch(model, lambda: model.predict(x, verbose=0)))


def test_fit_with_the_split_trunk_equals_recomputing():
    """The frozen trunk's features computed through the per-image network, cached or
    not, train the tail to the same weights."""
    x = np.random.default_rng(4).normal(size=(12, 96, 96, 3)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[np.arange(12) % 3]
    runs = []
    for cache_bytes in (1 << 30, 0):
        model = wide_model().freeze(upto=-4)
        model.trunk_cache_bytes = cache_bytes
        model.compile(Adam(1e-2), "categorical_crossentropy")
        aslnet.set_random_seed(5)
        h = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
        runs.append((h.history, model.get_weights()))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.keras
@pytest.mark.parametrize("how", ["class_weight", "sample_weight", "train_on_batch"])
def test_weighted_losses_match_keras(how):
    """class_weight / sample_weight scale each sample's loss and gradient, averaged over the
    batch (Keras's sum_over_batch_size): the same losses and weights as Keras."""
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    keras = pytest.importorskip("tensorflow").keras
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 5)).astype(np.float32)
    labels = np.array([0, 1, 2, 2, 1, 0, 2, 2, 1, 0, 0, 2])
    y = np.eye(3, dtype=np.float32)[labels]
    w0 = [rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=3).astype(np.float32)]
    model = aslnet.models.Sequential([L.Input((5,)), L.Dense(3, activation="softmax")])
    kmodel = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, activation="softmax")])
    for m, opt in ((model, SGD(0.5)), (kmodel, keras.optimizers.SGD(0.5))):
        m.set_weights(w0)
        m.compile(opt, "categorical_crossentropy")
    kw = {"class_weight": {0: 2.0, 2: 0.25}} if how == "class_weight" else \
        {"sample_weight": rng.uniform(0, 3, 12).astype(np.float32)}
    if how == "train_on_batch":
        ours = [model.train_on_batch(x[:6], y[:6], sample_weight=kw["sample_weight"][:6])]
        theirs = [float(kmodel.train_on_batch(x[:6], y[:6],
                                              sample_weight=kw["sample_weight"][:6]))]
    else:
        ours = model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0,
                         **kw).history["loss"]
        theirs = kmodel.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0,
                            **kw).history["loss"]
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)
    for a, b in zip(model.get_weights(), kmodel.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    if how != "train_on_batch":                 # and the weights did change the result
        plain = aslnet.models.Sequential([L.Input((5,)), L.Dense(3, activation="softmax")])
        plain.set_weights(w0)
        plain.compile(SGD(0.5), "categorical_crossentropy")
        plain.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
        assert np.abs(plain.get_weights()[0] - model.get_weights()[0]).max() > 1e-3


# -- fit's state after errors, optimizer state, callback order, learning rate ----------
def test_an_interrupted_fit_leaves_no_stale_validation_cache():
    """Ctrl-C (or an exception) inside fit: the frozen trunk's cached validation features
    must not answer a later evaluate on the same array after the trunk changed."""
    x, y = data(12)
    model = small_model().freeze(upto=-1)
    model.compile(SGD(0.1), "categorical_crossentropy")

    class Interrupt(aslnet.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, validation_data=(x, y), epochs=2, verbose=0, callbacks=[Interrupt()])
    assert model._val_cache is None
    other = small_model(seed=7).get_weights()
    model.set_weights(other[:-2] + model.get_weights()[-2:])      # a new trunk
    twin = small_model(seed=3)
    twin.set_weights(model.get_weights())
    twin.compile(SGD(0.1), "categorical_crossentropy")
    assert model.evaluate(x, y, verbose=0) == twin.evaluate(x, y, verbose=0)


def test_compile_with_a_new_optimizer_starts_from_zero():
    """Keras: compiling with a new optimizer forgets the old one's moments and iteration
    count; compiling again with the same optimizer keeps them."""
    x, y = data(8)
    model = small_model()
    adam = Adam(1e-2)
    model.compile(adam, "categorical_crossentropy")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    state = model.get_optimizer_state()
    model.compile(adam, "categorical_crossentropy")
    kept = model.get_optimizer_state()
    assert kept["iterations"] == state["iterations"] == 2
    for key, value in state["slots"].items():
        np.testing.assert_array_equal(kept["slots"][key], value)
    model.compile(Adam(1e-3), "categorical_crossentropy")
    assert model.get_optimizer_state()["iterations"] == 0
    fresh = small_model(seed=4)
    fresh.set_weights(model.get_weights())
    fresh.compile(Adam(1e-3), "categorical_crossentropy")
    for m in (model, fresh):
        m.train_on_batch(x, y)
    for a, b in zip(model.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_validation_inside_fit_keeps_the_callbacks_params():
    seen = []

    class Params(aslnet.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((dict(self.params), self.model))
    x, y = data(8)
    model = small_model()
    model.compile(SGD(0.0), "categorical_crossentropy")
    model.fit(x, y, batch_size=4, epochs=2, validation_data=(x, y), verbose=0,
              callbacks=[Params()])
    assert [(p["epochs"], p["steps"], m) for p, m in seen] == [(2, 2, model)] * 2


@pytest.mark.parametrize("method", ["predict", "evaluate"])
def test_batch_begin_callbacks_run_before_the_batch_is_computed(method):
    """A callback that changes the weights in on_*_batch_begin(i) changes batch i's result
    (Keras calls the hook, then computes the batch)."""
    model = _tiny()
    model.compile(SGD(0.0), "categorical_crossentropy")
    x = np.zeros((8, 4), np.float32)
    y = np.eye(4, dtype=np.float32)[np.zeros(8, int)]

    class SetBias(aslnet.callbacks.Callback):
        def on_batch(self, i, logs=None):
            kernel, _ = self.model.get_weights()
            self.model.set_weights([kernel, np.array([i + 1.0, 0, 0, 0], np.float32)])
        on_predict_batch_begin = on_test_batch_begin = on_batch
    p = 1 / (1 + 3 * np.exp(-np.array([1.0, 2.0])))    # softmax([i + 1, 0, 0, 0])[0]
    if method == "predict":
        out = model.predict(x, batch_size=4, verbose=0, callbacks=[SetBias()])
        np.testing.assert_allclose(out[::4, 0], p, rtol=1e-6)
    else:
        loss = model.evaluate(x, y, batch_size=4, verbose=0, callbacks=[SetBias()])
        np.testing.assert_allclose(loss, -np.log(p).mean(), rtol=1e-6)


def test_learning_rate_assign_as_keras_users_write_it():
    x, y = data(8)
    model = small_model().freeze(upto=-1)       # the Dense alone: no moving statistics
    model.compile(Adam(1e-2), "categorical_crossentropy")
    model.optimizer.learning_rate.assign(0.0)
    assert model.optimizer.learning_rate == 0.0 and model.optimizer.lr == 0.0
    assert model.optimizer.learning_rate.numpy().dtype == np.float32
    before = model.get_weights()
    model.train_on_batch(x, y)                 # Adam with rate 0 moves nothing
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    model.optimizer.lr = 1e-2
    model.train_on_batch(x, y)
    assert np.abs(model.get_weights()[-2] - before[-2]).max() > 1e-4
    for bad in (-1.0, float("nan"), "fast"):
        with pytest.raises(ValueError):
            model.optimizer.learning_rate = bad
    with pytest.raises(NotImplementedError, match="schedule"):
        Adam(learning_rate=lambda step: 1e-3)
    import copy
    twin = copy.deepcopy(model.optimizer)
    twin.learning_rate.assign(0.5)
    assert (twin.learning_rate, model.optimizer.learning_rate) == (0.5, 1e-2)


def test_learning_rate_scheduler_reaches_the_core():
    """LearningRateScheduler sets each epoch's rate before its batches: rate 0 in epoch 1
    leaves the weights of epoch 0 untouched."""
    x, y = data(8)
    model = small_model().freeze(upto=-1)       # the Dense alone: no moving statistics
    model.compile(SGD(0.1), "categorical_crossentropy")
    after = []

    class Weights(aslnet.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            after.append(self.model.get_weights())
    h = model.fit(x, y, epochs=3, verbose=0, callbacks=[
        aslnet.callbacks.LearningRateScheduler(lambda e, lr: [0.1, 0.0, 0.05][e]), Weights()])
    assert h.history["learning_rate"] == [0.1, 0.0, 0.05]
    for a, b in zip(after[0], after[1]):
        np.testing.assert_array_equal(a, b)
    assert any(np.abs(a - b).max() > 0 for a, b in zip(after[1], after[2]))


def test_load_pretrained_and_freeze_check_their_arguments(shared_weights_dir):
    for kw in ({"num_classes": 2.5}, {"num_classes": 0}, {"num_classes": True},
               {"trainable_layers": -3}, {"trainable_layers": 2.5},
               {"trainable_layers": 1000}, {"name": "resnet"}):
        with pytest.raises(ValueError, match=next(iter(kw)).replace("name", "model")):
            aslnet.load_pretrained(weights_dir=shared_weights_dir, **kw)
    model = aslnet.load_pretrained(num_classes=3, trainable_layers=0,
                                   weights_dir=shared_weights_dir, input_shape=None)
    assert model.input_shape == (None, 224, 224, 3) and model.trainable_weights == []
    with pytest.raises(ValueError, match="89 layers"):
        model.freeze(upto=-90)
    with pytest.raises(TypeError, match="upto"):
        model.freeze(upto=2.0)
    assert sum(l.trainable for l in model.freeze(upto=89).layers) == 0


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
    with pytest.raises(ValueError, match="input shape"):
        aslnet.models.Sequential([L.Dense(3)])
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


def test_calls_with_training_and_sub_models():
    model = small_model()
    x, _ = data(4)
    np.testing.assert_array_equal(model(x, training=False), model.predict(x, verbose=0))
    with pytest.raises(NotImplementedError, match="training=True"):
        model(x, training=True)
    with pytest.raises(NotImplementedError, match="nesting.*trainable = False"):
        model(L.Input((16, 16, 3)), training=False)
    t = L.Input((4,))
    L.Dense(3)(t, training=False)                          # no training mode: harmless
    with pytest.raises(NotImplementedError, match="training"):
        L.Dropout(0.5)(t, training=True)
    with pytest.raises(ValueError, match="must be an Input"):
        Model(model.layers[5].output, model.layers[-1].output)


def test_training_needs_a_softmax_output_said_before_the_core():
    m = aslnet.models.Sequential([L.Input((4,)), L.Dense(3, name="logits")])
    m.compile(SGD(0.1), "categorical_crossentropy")
    x, y = np.ones((2, 4), np.float32), np.eye(3, dtype=np.float32)[:2]
    m.evaluate(x, y, verbose=0)                            # Keras's CCE on the outputs
    for train in (lambda: m.fit(x, y, verbose=0), lambda: m.train_on_batch(x, y)):
        with pytest.raises(ValueError, match="'logits'.*softmax"):
            train()


def test_metric_names_and_verbose_2(capsys):
    keras = pytest.importorskip("keras")
    x, y = data(8)
    model = small_model()
    model.compile("adam", "categorical_crossentropy", metrics="accuracy")
    assert model.metrics_names == ["loss", "accuracy"]
    values = model.evaluate(x, y, batch_size=4, verbose=2)
    out = capsys.readouterr().out
    assert out.startswith("2/2 - ") and "accuracy:" in out and out.count("\n") == 1
    assert dict(zip(model.metrics_names, values))["accuracy"] == values[1]
    model.predict(x, batch_size=4, verbose=2)
    assert capsys.readouterr().out.startswith("2/2 - ")
    model.compile("adam", "sparse_categorical_crossentropy",
                  metrics=[keras.metrics.SparseCategoricalAccuracy()])
    h = model.fit(x, y.argmax(1), verbose=0)
    assert list(h.history) == ["loss", "sparse_categorical_accuracy"]
    with pytest.raises(ValueError, match="keras optimizer"):
        model.compile(keras.optimizers.Adam(1e-4), "categorical_crossentropy")
    with pytest.raises(TypeError, match="from keras"):
        aslnet.models.Sequential([L.Input((4,)), keras.layers.Dense(3)])
    with pytest.raises(TypeError, match="from keras"):
        L.Dense(3)(keras.Input((4,)))


def test_optimizers_take_keras_spellings():
    assert Adam(lr=0.01).learning_rate == 0.01
    adam = Adam(1e-3, name="opt", amsgrad=False, clipnorm=None, weight_decay=None)
    assert adam.name == "opt" and SGD().name == "sgd"
    with pytest.raises(NotImplementedError, match="amsgrad"):
        Adam(amsgrad=True)
    with pytest.raises(NotImplementedError, match="clipnorm"):
        SGD(clipnorm=1.0)
    with pytest.raises(TypeError, match="unexpected"):
        Adam(beta1=0.5)


def test_load_weights_by_name_into_another_head(tmp_path):
    aslnet.clear_session()                      # the same auto-names in both
    model = small_model()
    model.save_weights(tmp_path / "w.h5")
    aslnet.clear_session()
    other = small_model(seed=3, classes=5)
    with pytest.raises(ValueError):
        other.load_weights(tmp_path / "w.h5")
    other.load_weights(tmp_path / "w.h5", by_name=True, skip_mismatch=True)
    for a, b in zip(other.get_weights()[:-2], model.get_weights()[:-2]):
        np.testing.assert_array_equal(a, b)


def test_copies_and_pickles_of_a_trained_model_train_on_identically():
    import copy
    import pickle
    x, y = data(8)
    model = small_model()
    model.compile(Adam(1e-2), "categorical_crossentropy")
    model.fit(x, y, batch_size=4, verbose=0)
    twins = [copy.deepcopy(model), pickle.loads(pickle.dumps(model))]
    for m in [model] + twins:
        m.train_on_batch(x, y)                  # the Adam moments came along
    for twin in twins:
        assert twin.layers[1] is not model.layers[1]
        assert twin.get_optimizer_state()["iterations"] == 3
        for a, b in zip(twin.get_weights(), model.get_weights()):
            np.testing.assert_array_equal(a, b)


def test_mobilenet_at_another_size_says_which_weights(shared_weights_dir):
    from aslnet.applications.mobilenet import MobileNet
    with pytest.warns(UserWarning, match="224x224 only"):
        MobileNet(input_shape=(128, 128, 3), include_top=False, weights_dir=shared_weights_dir)


def test_layer_shapes_as_tf_keras_gives_them():
    model = small_model()
    conv = model.layers[2]
    assert conv.input_shape == (None, 17, 17, 3) and conv.output_shape == (None, 8, 8, 8)
    assert model.layers[-1].output_shape == (None, 3)
    with pytest.raises(AttributeError, match="never been called"):
        L.Dense(2).output_shape


def test_generator_methods_of_old_tutorials_and_to_categorical():
    from aslnet.utils import to_categorical
    keras = pytest.importorskip("keras")
    labels = np.array([[2], [0], [1], [2]])
    np.testing.assert_array_equal(to_categorical(labels), keras.utils.to_categorical(labels))
    np.testing.assert_array_equal(to_categorical([1, 0], num_classes=4),
                                  keras.utils.to_categorical([1, 0], num_classes=4))
    with pytest.raises(ValueError, match="labels must be in"):
        to_categorical([3], num_classes=3)
    x, y = data(8)
    model = small_model()
    model.compile(SGD(0.0), "categorical_crossentropy")

    def gen():
        while True:
            yield x, y
    with pytest.warns(DeprecationWarning, match="fit_generator"):
        h = model.fit_generator(gen(), steps_per_epoch=2, epochs=2, verbose=0, workers=1)
    assert len(h.history["loss"]) == 2
    with pytest.warns(DeprecationWarning, match="evaluate_generator"):
        loss = model.evaluate_generator(gen(), steps=1)
    assert loss == pytest.approx(model.evaluate(x, y, verbose=0))
    with pytest.warns(DeprecationWarning, match="predict_generator"):
        assert model.predict_generator(gen(), steps=2).shape == (16, 3)


def test_clear_messages_for_common_target_and_input_mistakes():
    x, y = data(6)
    model = small_model()
    model.compile(SGD(0.0), "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="look one-hot: use loss='categorical_crossentropy'"):
        model.fit(x, y, verbose=0)
    with pytest.raises(ValueError, match="integer labels"):
        model.fit(x, np.full(6, 0.5), verbose=0)
    model.compile(SGD(0.0), "categorical_crossentropy")
    with pytest.raises(ValueError, match="look like integer labels"):
        model.fit(x, y.argmax(1), verbose=0)
    name = model.input.name if hasattr(model.input, "name") else model.layers[0].name
    h = model.fit({name: x}, y, verbose=0)                      # Keras's dict of inputs
    assert len(h.history["loss"]) == 1
    np.testing.assert_array_equal(model.predict({name: x}, verbose=0),
                                  model.predict(x, verbose=0))
    with pytest.raises(ValueError, match="has one input"):
        model.predict({"other": x}, verbose=0)


def test_config_json_and_clone_rebuild_the_architecture():
    x, _ = data(4)
    model = small_model()
    for clone in (Model.from_config(model.get_config()),
                  aslnet.models.model_from_json(model.to_json()),
                  aslnet.models.clone_model(model)):
        assert [type(l) for l in clone.layers] == [type(l) for l in model.layers]
        assert [l.name for l in clone.layers] == [l.name for l in model.layers]
        assert clone.layers[2] is not model.layers[2]
        clone.set_weights(model.get_weights())
        np.testing.assert_array_equal(clone.predict(x, verbose=0), model.predict(x, verbose=0))
    seq = aslnet.models.Sequential([L.Dense(3, activation="softmax", input_shape=(4,))])
    back = aslnet.models.Sequential.from_config(seq.get_config())
    assert isinstance(back, aslnet.models.Sequential) and back.output_shape == (None, 3)


def test_optimizer_iterations_counts_the_models_steps():
    x, y = data(8)
    model = small_model()
    opt = Adam(1e-3)
    assert opt.iterations == 0
    model.compile(opt, "categorical_crossentropy")
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert model.optimizer.iterations == 4
    import copy
    assert copy.deepcopy(model).optimizer.iterations == 4


def test_summary_show_trainable():
    model = small_model().freeze(upto=-2)
    lines = []
    model.summary(show_trainable=True, print_fn=lines.append)
    assert lines[2].split()[-1] == "Trainable"
    flags = [line.split()[-1] for line in lines if "(" in line and ")" in line][1:]
    assert flags == ["Y" if l.trainable else "N" for l in model.layers]
    assert len(lines[1]) == 65 + 11


def test_fine_tune_phase_2_goes_on_with_phase_1_s_adam():
    from aslnet.preprocessing.image import ImageDataGenerator
    x, y = data(8)
    model = small_model()
    flow = ImageDataGenerator().flow(x, y, batch_size=4, shuffle=False)
    unfreeze = model.layers[4].name                      # the depthwise convolution
    h = model.fine_tune(flow, head_epochs=2, epochs=1, unfreeze_from=unfreeze, verbose=0)
    assert len(model.head_history.history["loss"]) == 2 and len(h.history["loss"]) == 1
    assert model.optimizer.iterations == (2 + 1) * 2     # one Adam across both phases
    assert model.optimizer.learning_rate == 2e-5
    assert [l.trainable for l in model.layers[4:]] == [
        not isinstance(l, L.BatchNormalization) for l in model.layers[4:]]


def test_optimizer_state_across_copies_recompiles_and_graph_edits():
    """A copy recompiled with a new optimizer starts from zero (it used to take the old
    one's state along); Sequential.add/pop keep the state of the layers that stay; a
    shallow copy does not take the original's optimizer link."""
    import copy
    x, y = data(8)
    model = small_model()
    model.compile(Adam(1e-2), "categorical_crossentropy")
    model.fit(x, y, batch_size=4, verbose=0)
    twin = copy.deepcopy(model)
    twin.compile(SGD(0.1, momentum=0.9), "categorical_crossentropy")
    twin.fit(x, y, batch_size=4, verbose=0)
    assert twin.optimizer.iterations == 2
    shallow = copy.copy(model)
    assert model.optimizer.iterations == 2 and shallow.optimizer is model.optimizer
    model.train_on_batch(x, y)
    assert model.optimizer.iterations == 3

    aslnet.set_random_seed(1)
    seq = aslnet.models.Sequential([L.Dense(6, activation="relu", input_shape=(4,)),
                                    L.Dense(3, activation="softmax", name="head")])
    seq.compile(Adam(1e-2), "categorical_crossentropy")
    xs = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    seq.fit(xs, y, batch_size=4, verbose=0)
    kept = seq.get_optimizer_state()
    head = seq.pop()
    seq.add(L.Dense(5, activation="softmax", name="head2"))      # another head
    state = seq.get_optimizer_state()
    assert state["iterations"] == kept["iterations"] == 2
    first = seq.layers[0].name
    for key in [k for k in kept["slots"] if k[0] == first]:
        np.testing.assert_array_equal(state["slots"][key], kept["slots"][key])
    assert not any(k[0] == head.name for k in state["slots"])
    seq.fit(xs, np.eye(5, dtype=np.float32)[np.arange(8) % 5], batch_size=4, verbose=0)


def test_training_needs_a_classifier_output_and_sane_learning_rates():
    model = aslnet.models.Sequential([L.Input((4, 4, 2)),
                                      L.Dense(3, activation="softmax")])   # (None, 4, 4, 3)
    model.compile(SGD(0.1), "categorical_crossentropy")
    with pytest.raises(ValueError, match="output must be \\(None, classes\\)"):
        model.fit(np.ones((2, 4, 4, 2), np.float32), np.eye(3, dtype=np.float32)[:2],
                  verbose=0)
    for bad in (1e300, "1e-3", b"0.1", np.complex64(1), True):
        with pytest.raises(ValueError):
            Adam(learning_rate=bad)


@pytest.mark.keras
def test_evaluate_and_validation_with_sample_weights_match_keras():
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    keras = pytest.importorskip("tensorflow").keras
    rng = np.random.default_rng(2)
    x = rng.normal(size=(10, 5)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 10)]
    w = rng.uniform(0, 3, 10).astype(np.float32)
    w0 = [rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=3).astype(np.float32)]
    model = aslnet.models.Sequential([L.Input((5,)), L.Dense(3, activation="softmax")])
    kmodel = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, activation="softmax")])
    for m, opt in ((model, SGD(0.1)), (kmodel, keras.optimizers.SGD(0.1))):
        m.set_weights(w0)
        m.compile(opt, "categorical_crossentropy", metrics=["accuracy"])
    ours = model.evaluate(x, y, batch_size=4, sample_weight=w, verbose=0)
    theirs = kmodel.evaluate(x, y, batch_size=4, sample_weight=w, verbose=0)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)
    assert ours[0] != pytest.approx(model.evaluate(x, y, verbose=0)[0], rel=1e-3)
    np.testing.assert_allclose(model.test_on_batch(x, y, sample_weight=w),
                               kmodel.test_on_batch(x, y, sample_weight=w), rtol=1e-5)
    for kw in ({"validation_data": (x[6:], y[6:], w[6:])}, {"validation_split": 0.4}):
        h = model.fit(x, y, sample_weight=w, batch_size=4, epochs=1, shuffle=False,
                      verbose=0, **kw)
        kh = kmodel.fit(x, y, sample_weight=w, batch_size=4, epochs=1, shuffle=False,
                        verbose=0, **kw)
        np.testing.assert_allclose(h.history["val_loss"], kh.history["val_loss"], rtol=1e-5)


def test_sequential_edits_release_the_old_network():
    x, _ = data(4)
    seq = aslnet.models.Sequential([L.Conv2D(4, 3, input_shape=(16, 16, 3)),
                                    L.GlobalAveragePooling2D(),
                                    L.Dense(3, activation="softmax")])
    seq.predict(x, verbose=0)
    assert getattr(seq, "_split_cache", None) is not None
    seq.pop()
    assert getattr(seq, "_split_cache", None) is None and seq._net is None
