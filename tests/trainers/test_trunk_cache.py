"""The frozen-trunk cache: exactly the results of recomputing, switched off when it can't be
exact, spilled to an unnamed file, robust to write errors."""
import numpy as np
import pytest

import aslnet
from aslnet import layers as L
from aslnet.models import Model
from aslnet.optimizers import SGD, Adam

from tests.model_fixtures import data, small_model


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
    net = model._net.net
    first_conv = model._net.first_op(model.layers[2])
    fwd, _ = net.layer_calls(first_conv)
    assert fwd == 2                    # 2 batches, once: epochs 2 and 3 use the cache

    model = small_model(dropout=0.5)   # dropout in the trunk: not deterministic
    model.freeze(upto=-1)
    model.compile(Adam(1e-2), "categorical_crossentropy")
    model.fit(x, y, batch_size=8, epochs=3, verbose=0)
    fwd, _ = model._net.net.layer_calls(model._net.first_op(model.layers[2]))
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
        counts[flip] = model._net.net.layer_calls(model._net.first_op(model.layers[2]))[0]
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
        counts[name] = model._net.net.layer_calls(model._net.first_op(model.layers[2]))[0]
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
    calls = cached._net.net.layer_calls(cached._net.first_op(cached.layers[2]))[0]
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
    assert cached._net.net.layer_calls(cached._net.first_op(cached.layers[2]))[0] == 8


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
    assert cached._net.net.layer_calls(cached._net.first_op(cached.layers[2]))[0] == 24


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
