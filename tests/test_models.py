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
