"""aslnet.preprocessing.image: loading, listing, batching, caching and augmentation, as Keras."""
import os
import warnings

import numpy as np
import pytest
from PIL import Image

from aslnet.applications import imagenet_utils
from aslnet.preprocessing import image, image_utils
from aslnet.preprocessing.image import (
    ImageCache, ImageDataGenerator, Iterator, array_to_img, img_to_array, load_img, save_img)

RNG = np.random.RandomState(0)


def rgb(h, w):
    return Image.fromarray(RNG.randint(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch):
    """Each test gets its own empty process-wide image cache (and the same random images)."""
    RNG.seed(0)
    cache = ImageCache()
    monkeypatch.setattr(image_utils, "image_cache", cache)
    return cache


@pytest.fixture
def tree(tmp_path):
    """Three classes of small images in every supported flavour, plus files to skip."""
    root = tmp_path / "data"
    for name in "abc":
        (root / name).mkdir(parents=True)
    rgb(20, 30).save(root / "a" / "img1.png")
    rgb(40, 25).save(root / "a" / "img0.JPG", quality=95)
    rgb(12, 12).convert("L").save(root / "a" / "gray.png")
    (root / "a" / "sub").mkdir()
    rgb(9, 11).save(root / "a" / "sub" / "nested.bmp")
    (root / "a" / "notes.txt").write_text("not an image, not listed")
    Image.fromarray(RNG.randint(0, 256, (16, 16, 4), dtype=np.uint8)).save(root / "b" / "rgba.png")
    rgb(15, 17).convert("P").save(root / "b" / "palette.png")
    rgb(33, 21).save(root / "b" / "z.bmp")
    rgb(24, 24).save(root / "c" / "good.jpeg")
    (root / "c" / "corrupt.jpg").write_bytes(b"\xff\xd8 this is no jpeg")
    (root / "c" / "fake.png").write_text("a text file named like an image")
    (root / "c" / "empty.jpeg").write_bytes(b"")
    (root / "LICENSE").write_text("a file, not a class")
    return root


EXPECTED = ["a/gray.png", "a/img0.JPG", "a/img1.png", os.path.join("a", "sub", "nested.bmp"),
            "b/palette.png", "b/rgba.png", "b/z.bmp", "c/good.jpeg"]
EXPECTED = [f.replace("/", os.sep) for f in EXPECTED]


def flow(root, **kwargs):
    kwargs.setdefault("target_size", (8, 6))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ImageDataGenerator().flow_from_directory(str(root), **kwargs)


def pil_nearest(path, size, mode="RGB", resample=Image.NEAREST):
    return np.asarray(Image.open(path).convert(mode).resize(size[::-1], resample))


# -- listing ----------------------------------------------------------------------------------

def test_listing_follows_keras_order(tree, capsys):
    with pytest.warns(UserWarning) as record:
        it = ImageDataGenerator().flow_from_directory(str(tree), target_size=(8, 6))
    assert capsys.readouterr().out == "Found 8 images belonging to 3 classes.\n"
    assert it.class_indices == {"a": 0, "b": 1, "c": 2}
    assert it.filenames == EXPECTED
    assert it.filepaths == [os.path.join(str(tree), f) for f in EXPECTED]
    assert it.classes.tolist() == [0, 0, 0, 0, 1, 1, 1, 2]
    assert it.classes.dtype == np.int32
    assert (it.samples, it.num_classes, it.batch_size, len(it)) == (8, 3, 32, 1)
    skipped = sorted(str(w.message).split(":")[0] for w in record)
    assert skipped == [f"Skipping {tree / 'c' / name}"
                       for name in ("corrupt.jpg", "empty.jpeg", "fake.png")]


def test_explicit_classes_set_label_order(tree):
    it = flow(tree, classes=["c", "a"])
    assert it.class_indices == {"c": 0, "a": 1}
    assert it.filenames[0] == os.path.join("c", "good.jpeg")
    assert it.classes.tolist() == [0, 1, 1, 1, 1]


def test_validation_split_takes_the_start_of_each_class(tree):
    gen = ImageDataGenerator(validation_split=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        val = gen.flow_from_directory(str(tree), target_size=(4, 4), subset="validation")
        train = gen.flow_from_directory(str(tree), target_size=(4, 4), subset="training")
    assert sorted(val.filenames + train.filenames) == sorted(EXPECTED)
    assert val.filenames[:2] == EXPECTED[:2]
    with pytest.raises(ValueError):
        ImageDataGenerator(validation_split=1.5)


def test_invalid_arguments(tree):
    for kwargs in ({"class_mode": "multi"}, {"color_mode": "hsv"}, {"interpolation": "cubic"},
                   {"subset": "test"}):
        with pytest.raises(ValueError):
            flow(tree, **kwargs)


# -- loading ----------------------------------------------------------------------------------

def test_batches_equal_pil_nearest_resize(tree):
    it = flow(tree, target_size=(13, 7), shuffle=False)
    x, y = it[0]
    assert x.shape == (8, 13, 7, 3) and x.dtype == np.float32
    for i, path in enumerate(it.filepaths):
        np.testing.assert_array_equal(x[i], pil_nearest(path, (13, 7)))


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "lanczos"])
def test_other_interpolations_match_pil(tree, interpolation):
    it = flow(tree, target_size=(5, 9), shuffle=False, interpolation=interpolation)
    x, _ = it[0]
    resample = getattr(Image, interpolation.upper())
    for i, path in enumerate(it.filepaths):
        np.testing.assert_array_equal(x[i], pil_nearest(path, (5, 9), resample=resample))


@pytest.mark.parametrize("color_mode,channels,pil_mode", [
    ("grayscale", 1, "L"), ("rgba", 4, "RGBA"), ("rgb", 3, "RGB")])
def test_color_modes(tree, color_mode, channels, pil_mode):
    it = flow(tree, target_size=(6, 6), shuffle=False, color_mode=color_mode)
    x, _ = it[0]
    assert x.shape == (8, 6, 6, channels)
    for i, path in enumerate(it.filepaths):
        expected = pil_nearest(path, (6, 6), pil_mode)
        np.testing.assert_array_equal(x[i], expected.reshape(6, 6, channels))


def test_load_img_converts_to_rgb_like_pil(tree):
    for name in ("a/gray.png", "b/rgba.png", "b/palette.png", "a/img0.JPG"):
        img = load_img(tree / name)
        assert img.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(img),
                                      np.asarray(Image.open(tree / name).convert("RGB")))
    img = load_img(str(tree / "a" / "img1.png"), target_size=(7, 5))
    assert img.size == (5, 7)
    np.testing.assert_array_equal(np.asarray(img), pil_nearest(tree / "a" / "img1.png", (7, 5)))
    assert load_img(tree / "a" / "gray.png", color_mode="grayscale").mode == "L"
    with open(tree / "b" / "z.bmp", "rb") as f:
        assert load_img(f).size == (21, 33)
    with pytest.raises(ValueError):
        load_img(tree / "a" / "img1.png", target_size=(3, 3), interpolation="cubic")
    with pytest.raises(ValueError):
        load_img(tree / "a" / "img1.png", color_mode="cmyk")


def test_array_conversions_round_trip(tmp_path):
    x = RNG.randint(0, 256, (5, 4, 3)).astype(np.float32)
    img = array_to_img(x, scale=False)
    assert img.size == (4, 5) and img.mode == "RGB"
    np.testing.assert_array_equal(img_to_array(img), x)
    assert img_to_array(img, data_format="channels_first").shape == (3, 5, 4)
    assert img_to_array(img, dtype="uint8").dtype == np.uint8
    gray = img_to_array(Image.fromarray(x[:, :, 0].astype(np.uint8)))
    assert gray.shape == (5, 4, 1)
    scaled = img_to_array(array_to_img(x / 1000))  # stretched to [0, 255]
    assert scaled.min() == 0 and scaled.max() == 255
    assert array_to_img(np.zeros((2, 2, 4))).mode == "RGBA"
    with pytest.raises(ValueError):
        array_to_img(np.zeros((2, 2)))
    save_img(tmp_path / "x.png", x, scale=False)
    np.testing.assert_array_equal(img_to_array(load_img(tmp_path / "x.png")), x)
    with pytest.warns(UserWarning, match="RGBA"):
        save_img(tmp_path / "y.jpg", np.zeros((2, 2, 4)), file_format="jpeg")


def test_damaged_image_raises_naming_the_file(tmp_path):
    root = tmp_path / "d"
    (root / "k").mkdir(parents=True)
    rgb(64, 64).save(root / "k" / "whole.jpg")
    data = (root / "k" / "whole.jpg").read_bytes()
    (root / "k" / "truncated.jpg").write_bytes(data[:len(data) // 2])
    it = flow(root, shuffle=False, batch_size=1)
    assert it.samples == 2  # the header is fine: found at listing
    with pytest.raises(OSError, match="truncated.jpg"):
        it[0]


# -- batches and labels -----------------------------------------------------------------------

def test_class_modes(tree):
    x, y = flow(tree, shuffle=False)[0]
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, np.eye(3, dtype=np.float32)[[0, 0, 0, 0, 1, 1, 1, 2]])
    for mode in ("sparse", "binary"):
        _, y = flow(tree, shuffle=False, class_mode=mode)[0]
        assert y.dtype == np.float32 and y.tolist() == [0, 0, 0, 0, 1, 1, 1, 2]
    batch = flow(tree, shuffle=False, class_mode=None)[0]
    np.testing.assert_array_equal(batch, x)
    xi, yi = flow(tree, shuffle=False, class_mode="input")[0]
    np.testing.assert_array_equal(xi, yi)
    assert yi is not xi


def test_shuffled_labels_follow_their_images(tree):
    it = flow(tree, shuffle=True, seed=3, batch_size=3, class_mode="sparse")
    ordered = flow(tree, shuffle=False, class_mode="sparse")[0][0]
    for i in range(len(it)):
        x, y = it[i]
        for img, label in zip(x, y):
            j = next(j for j in range(8) if np.array_equal(ordered[j], img))
            assert it.classes[j] == label


def test_len_and_last_partial_batch(tree):
    it = flow(tree, batch_size=3, shuffle=False)
    assert len(it) == 3
    assert [len(it[i][0]) for i in range(3)] == [3, 3, 2]
    np.testing.assert_array_equal(it[-1][0], it[2][0])
    with pytest.raises(ValueError):
        it[3]
    assert [len(next(it)[0]) for _ in range(7)] == [3, 3, 2, 3, 3, 2, 3]
    assert iter(it) is it


class Indices(Iterator):
    """An iterator whose batches are their sample indices."""

    def _get_batches_of_transformed_samples(self, index_array, rng):
        return index_array


def keras_next_batches(n, batch_size, seed, count):
    """keras_preprocessing's Iterator._flow_index, with its global NumPy seeding."""
    state = np.random.get_state()
    batches, batch_index, index_array = [], 0, None
    try:
        for total_batches_seen in range(count):
            np.random.seed(seed + total_batches_seen)
            if batch_index == 0:
                index_array = np.random.permutation(n)
            current = (batch_index * batch_size) % n
            batch_index = batch_index + 1 if n > current + batch_size else 0
            batches.append(index_array[current:current + batch_size])
    finally:
        np.random.set_state(state)
    return batches


def keras_indexed_epochs(n, batch_size, seed, epochs):
    """keras_preprocessing's Iterator.__getitem__ and on_epoch_end, with global seeding."""
    state = np.random.get_state()
    out, index_array, seen = [], None, 0
    try:
        for _ in range(epochs):
            for idx in range(-(-n // batch_size)):
                np.random.seed(seed + seen)
                seen += 1
                if index_array is None:
                    index_array = np.random.permutation(n)
                out.append(index_array[batch_size * idx:batch_size * (idx + 1)])
            index_array = np.random.permutation(n)
    finally:
        np.random.set_state(state)
    return out


def test_seeded_shuffle_is_keras_and_leaves_global_state_alone():
    before = np.random.get_state()[1].copy()
    it = Indices(23, 5, shuffle=True, seed=7)
    got = [next(it) for _ in range(12)]
    for a, b in zip(got, keras_next_batches(23, 5, 7, 12)):
        np.testing.assert_array_equal(a, b)
    it = Indices(23, 5, shuffle=True, seed=7)
    got = []
    for _ in range(3):
        got += [it[i] for i in range(len(it))]
        it.on_epoch_end()
    for a, b in zip(got, keras_indexed_epochs(23, 5, 7, 3)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.random.get_state()[1], before)


def test_every_sample_once_per_epoch_in_a_new_order():
    for access in ("next", "index"):
        it = Indices(23, 5, shuffle=True, seed=1)
        epochs = []
        for _ in range(3):
            if access == "next":
                epoch = np.concatenate([next(it) for _ in range(len(it))])
            else:
                epoch = np.concatenate([it[i] for i in range(len(it))])
                it.on_epoch_end()
            assert sorted(epoch.tolist()) == list(range(23))
            epochs.append(epoch.tolist())
        assert epochs[0] != epochs[1] != epochs[2]
    unshuffled = Indices(7, 3, shuffle=False, seed=None)
    assert [next(unshuffled).tolist() for _ in range(3)] == [[0, 1, 2], [3, 4, 5], [6]]


def test_same_seed_same_batches(tree):
    a = [flow(tree, seed=5, batch_size=3)[i][1] for i in range(3)]
    b = [flow(tree, seed=5, batch_size=3)[i][1] for i in range(3)]
    for ya, yb in zip(a, b):
        np.testing.assert_array_equal(ya, yb)
    it = flow(tree, seed=5, batch_size=3)
    it.reset()
    assert len(next(it)[0]) == 3


def test_unseeded_shuffle_follows_numpys_global_seed():
    np.random.seed(11)
    a = [next(Indices(20, 4, shuffle=True, seed=None)).tolist() for _ in range(2)]
    np.random.seed(11)
    b = [next(Indices(20, 4, shuffle=True, seed=None)).tolist() for _ in range(2)]
    assert a == b


# -- cache ------------------------------------------------------------------------------------

@pytest.fixture
def decodes(monkeypatch):
    """Paths that load_img decoded, in order."""
    seen = []

    def counting(path, *args, **kwargs):
        seen.append(path)
        return load_img(path, *args, **kwargs)
    monkeypatch.setattr(image_utils, "load_img", counting)
    return seen


def test_each_image_is_decoded_once_per_process(tree, decodes, fresh_cache):
    it = flow(tree, batch_size=3, seed=0)
    first = [it[i][0] for i in range(len(it))]
    it.on_epoch_end()
    for i in range(len(it)):
        it[i]
    again = flow(tree, batch_size=3, seed=0)  # a new iterator over the same files
    for i, x in enumerate(first):
        np.testing.assert_array_equal(again[i][0], x)
    assert sorted(decodes) == sorted(it.filepaths)
    assert len(fresh_cache) == 8
    assert fresh_cache.nbytes == sum(x.size for x in first)  # uint8 (H, W, C) arrays

    flow(tree, target_size=(5, 5), shuffle=False)[0]  # other settings: decoded again
    assert len(decodes) == 16


def test_small_images_are_cached_before_resizing(tree, decodes, fresh_cache):
    """Upsized images are stored as decoded (smaller), resized again on each read: the same
    pixels as without the cache, in a fraction of the memory."""
    size = (64, 48)
    cached = flow(tree, target_size=size, shuffle=False)
    first, again = cached[0][0], cached[0][0]
    assert len(decodes) == 8
    plain = flow(tree, target_size=size, shuffle=False, cache=False)[0][0]
    np.testing.assert_array_equal(first, plain)
    np.testing.assert_array_equal(again, plain)
    entries = list(fresh_cache._arrays.values())
    assert all(isinstance(e, Image.Image) for e in entries)    # every tree image is < 64x48
    assert fresh_cache.nbytes < first.size * 4 // 10           # uint8 arrays would take .size


def test_cache_can_be_disabled(tree, decodes, fresh_cache):
    it = flow(tree, cache=False, shuffle=False)
    it[0]
    it[0]
    assert len(decodes) == 16 and len(fresh_cache) == 0


def test_cache_bound_and_batches_are_copies(tree, decodes, fresh_cache):
    fresh_cache.max_bytes = 2 * 8 * 6 * 3
    it = flow(tree, shuffle=False)
    x, _ = it[0]
    assert len(fresh_cache) == 2 and fresh_cache.nbytes == fresh_cache.max_bytes
    x[:] = 0  # batches never alias the cache
    np.testing.assert_array_equal(it[0][0][:2], flow(tree, shuffle=False, cache=False)[0][0][:2])
    stored = fresh_cache.get(next(iter(fresh_cache._arrays)))
    assert not stored.flags.writeable
    fresh_cache.clear()
    assert len(fresh_cache) == 0 and fresh_cache.nbytes == 0


def test_changed_file_is_read_again(tree, decodes):
    it = flow(tree, shuffle=False, batch_size=1)
    path = tree / "c" / "good.jpeg"
    it[-1]
    rgb(30, 30).save(path)  # other content, other size
    np.testing.assert_array_equal(it[-1][0][0], pil_nearest(path, (8, 6)))
    assert decodes.count(str(path)) == 2


# -- standardisation and augmentation ---------------------------------------------------------

def test_preprocessing_function_then_rescale(tree):
    plain = flow(tree, shuffle=False)[0][0]
    gen = ImageDataGenerator(preprocessing_function=lambda x: x / 127.5 - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x, _ = gen.flow_from_directory(str(tree), target_size=(8, 6), shuffle=False)[0]
    np.testing.assert_allclose(x, plain / 127.5 - 1, rtol=1e-6)
    gen = ImageDataGenerator(rescale=1 / 255.0)
    np.testing.assert_allclose(gen.standardize(plain[0].copy()), plain[0] / 255, rtol=1e-6)


def test_sample_and_feature_wise_normalisation():
    x = RNG.rand(6, 4, 5, 3).astype(np.float32) * 255
    gen = ImageDataGenerator(samplewise_center=True, samplewise_std_normalization=True)
    y = gen.standardize(x[0].copy())
    assert abs(y.mean()) < 1e-4 and abs(y.std() - 1) < 1e-3
    gen = ImageDataGenerator(featurewise_center=True, featurewise_std_normalization=True)
    with pytest.warns(UserWarning, match="fit"):
        gen.standardize(x[0].copy())
    gen.fit(x)
    out = np.stack([gen.standardize(img.copy()) for img in x])
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=(0, 1, 2)), 1, atol=1e-3)
    with pytest.warns(UserWarning):
        gen = ImageDataGenerator(zca_whitening=True)
    gen.fit(x)
    assert gen.principal_components.shape == (60, 60)


def test_apply_transform_without_parameters_is_identity():
    x = RNG.rand(5, 7, 3).astype(np.float32)
    gen = ImageDataGenerator()
    np.testing.assert_array_equal(gen.apply_transform(x, {}), x)
    np.testing.assert_array_equal(gen.random_transform(x), x)


def test_flips_and_channel_shift():
    x = RNG.rand(5, 7, 3).astype(np.float32) * 255
    gen = ImageDataGenerator()
    np.testing.assert_array_equal(gen.apply_transform(x, {"flip_horizontal": True}), x[:, ::-1])
    np.testing.assert_array_equal(gen.apply_transform(x, {"flip_vertical": True}), x[::-1])
    shifted = gen.apply_transform(x, {"channel_shift_intensity": 1000})
    np.testing.assert_array_equal(shifted, np.full_like(x, x.max()))


def test_brightness_uses_pil_enhance():
    x = np.round(RNG.rand(5, 7, 3) * 255).astype(np.float32)
    gen = ImageDataGenerator()
    np.testing.assert_array_equal(gen.apply_transform(x, {"brightness": 1.0}), x)
    np.testing.assert_array_equal(gen.apply_transform(x, {"brightness": 0.0}), 0 * x)
    assert gen.apply_transform(x, {"brightness": 0.5}).max() <= x.max() / 2 + 1


# Keras's apply_affine_transform builds (row, col) offsets as if its tx were a column shift:
# so do we (Keras's height_shift_range moves images sideways, keras-team/keras#17398).
@pytest.mark.parametrize("fill_mode,cval,expected", [
    ("nearest", 0, [2, 3, 4, 4, 4]),
    ("constant", -1, [2, 3, 4, -1, -1]),
    ("reflect", 0, [2, 3, 4, 4, 3]),
    ("wrap", 0, [2, 3, 4, 1, 2]),  # SciPy's legacy 'wrap': period size - 1
])
def test_shift_fill_modes(fill_mode, cval, expected):
    x = np.tile(np.arange(5, dtype=np.float32), (3, 1))[:, :, np.newaxis]
    gen = ImageDataGenerator(fill_mode=fill_mode, cval=cval)
    out = gen.apply_transform(x, {"tx": 2})[:, :, 0]
    np.testing.assert_allclose(out, np.tile(expected, (3, 1)), atol=1e-6)


def test_rotation_by_90_degrees():
    x = RNG.rand(6, 6, 2).astype(np.float32)
    out = ImageDataGenerator().apply_transform(x, {"theta": 90})
    np.testing.assert_allclose(out, np.rot90(x, 1), atol=1e-5)


def test_nearest_order_and_zoom():
    x = RNG.rand(6, 6, 1).astype(np.float32)
    gen = ImageDataGenerator(interpolation_order=0)
    out = gen.apply_transform(x, {"zx": 0.5, "zy": 0.5})
    assert set(np.unique(out)) <= set(np.unique(x))  # no blending at order 0
    with pytest.raises(ValueError):
        ImageDataGenerator(interpolation_order=3)
    with pytest.raises(ValueError):
        ImageDataGenerator(fill_mode="mirror")


def keras_affine(x, theta, tx, ty, shear, zx, zy, fill_mode, cval, order):
    """keras_preprocessing's apply_affine_transform (channels last), with SciPy."""
    ndimage = pytest.importorskip("scipy.ndimage")
    t, s = np.deg2rad(theta), np.deg2rad(shear)
    m = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    m = m.dot([[1, 0, tx], [0, 1, ty], [0, 0, 1]])
    m = m.dot([[1, -np.sin(s), 0], [0, np.cos(s), 0], [0, 0, 1]])
    m = m.dot([[zx, 0, 0], [0, zy, 0], [0, 0, 1]])
    o_x, o_y = x.shape[0] / 2 - 0.5, x.shape[1] / 2 - 0.5
    m = np.dot(np.dot([[1, 0, o_x], [0, 1, o_y], [0, 0, 1]], m),
               [[1, 0, -o_x], [0, 1, -o_y], [0, 0, 1]])
    m[:, [0, 1]] = m[:, [1, 0]]
    m[[0, 1]] = m[[1, 0]]
    channels = [ndimage.affine_transform(c, m[:2, :2], m[:2, 2], order=order, mode=fill_mode,
                                         cval=cval) for c in np.rollaxis(x, 2, 0)]
    return np.stack(channels, axis=2)


@pytest.mark.parametrize("fill_mode", ["nearest", "constant", "reflect", "wrap"])
@pytest.mark.parametrize("order", [0, 1])
def test_affine_transforms_match_keras_scipy(fill_mode, order):
    rng = np.random.RandomState(1)
    for _ in range(10):
        h, w = rng.randint(3, 12, 2)
        x = (rng.rand(h, w, 3) * 255).astype(np.float32)
        p = {"theta": rng.uniform(-180, 180), "tx": rng.uniform(-5, 5),
             "ty": rng.uniform(-5, 5), "shear": rng.uniform(-30, 30),
             "zx": rng.uniform(0.5, 1.5), "zy": rng.uniform(0.5, 1.5)}
        gen = ImageDataGenerator(fill_mode=fill_mode, cval=17.0, interpolation_order=order)
        expected = keras_affine(x, fill_mode=fill_mode, cval=17.0, order=order, **p)
        np.testing.assert_allclose(gen.apply_transform(x, p), expected, rtol=1e-5, atol=1e-3)


def test_random_parameters_ranges_and_seed():
    gen = ImageDataGenerator(rotation_range=20, width_shift_range=0.1, height_shift_range=[3],
                             shear_range=5, zoom_range=0.2, horizontal_flip=True,
                             channel_shift_range=10, brightness_range=[0.5, 1.5])
    state = np.random.get_state()[1].copy()
    a = gen.get_random_transform((50, 40, 3), seed=4)
    assert a == gen.get_random_transform((50, 40, 3), seed=4)
    np.testing.assert_array_equal(np.random.get_state()[1], state)
    for seed in range(30):
        p = gen.get_random_transform((50, 40, 3), seed=seed)
        assert abs(p["theta"]) <= 20 and abs(p["ty"]) <= 4 and abs(p["tx"]) == 3
        assert 0.8 <= p["zx"] <= 1.2 and 0.5 <= p["brightness"] <= 1.5
        assert abs(p["channel_shift_intensity"]) <= 10 and not p["flip_vertical"]
    x = RNG.rand(10, 8, 3).astype(np.float32) * 255
    np.testing.assert_array_equal(gen.random_transform(x, seed=2), gen.random_transform(x, seed=2))
    assert ImageDataGenerator(zoom_range=[0.5, 2]).zoom_range == [0.5, 2]
    for bad in ({"zoom_range": "x"}, {"brightness_range": 0.5}):
        with pytest.raises(ValueError):
            ImageDataGenerator(**bad)


def test_augmented_flow_is_reproducible(tree, tmp_path):
    out = tmp_path / "augmented"
    out.mkdir()
    gen = ImageDataGenerator(rotation_range=30, zoom_range=0.2, horizontal_flip=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = gen.flow_from_directory(str(tree), target_size=(8, 6), seed=9, batch_size=4)
        b = gen.flow_from_directory(str(tree), target_size=(8, 6), seed=9, batch_size=4,
                                    save_to_dir=str(out), save_prefix="aug")
    for _ in range(3):
        xa, ya = next(a)
        xb, yb = next(b)
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    saved = os.listdir(out)
    assert len(saved) == 12 and all(f.startswith("aug_") and f.endswith(".png") for f in saved)


# -- flow (arrays) ----------------------------------------------------------------------------

def test_flow_from_arrays():
    x = RNG.randint(0, 256, (10, 4, 4, 3)).astype(np.uint8)
    y = np.arange(10)
    it = ImageDataGenerator(rescale=0.5).flow(x, y, batch_size=4, shuffle=False)
    assert len(it) == 3
    xb, yb = it[2]
    np.testing.assert_array_equal(xb, x[8:].astype(np.float32) * 0.5)
    assert yb.tolist() == [8, 9]
    assert x.dtype == np.uint8  # the caller's array is untouched
    xb, yb, wb = ImageDataGenerator().flow(x, y, sample_weight=y * 2, batch_size=4,
                                           shuffle=False)[0]
    assert wb.tolist() == [0, 2, 4, 6]
    only_x = ImageDataGenerator().flow(x, batch_size=3, seed=1)[0]
    assert only_x.shape == (3, 4, 4, 3)
    shuffled = ImageDataGenerator().flow(x, y, batch_size=10, seed=1)[0][1]
    assert sorted(shuffled.tolist()) == list(range(10)) and shuffled.tolist() != list(range(10))
    with pytest.raises(ValueError):
        ImageDataGenerator().flow(x, y[:5])
    with pytest.raises(ValueError):
        ImageDataGenerator().flow(x[0], y[:1])


def test_flow_subsets():
    x = np.zeros((10, 2, 2, 1))
    y = np.array([0, 1] * 5)
    gen = ImageDataGenerator(validation_split=0.2)
    assert gen.flow(x, y, subset="validation").n == 2
    assert gen.flow(x, y, subset="training").n == 8
    with pytest.raises(ValueError, match="different number of classes"):
        gen.flow(x, np.sort(y), subset="validation")
    # as Keras: the validation part against the training part (here only the validation
    # part, the first 3 of 13, has class 2)
    x13, y13 = np.zeros((13, 2, 2, 1)), np.array([0, 1, 2] + [0, 1] * 5)
    gen = ImageDataGenerator(validation_split=0.25)
    with pytest.raises(ValueError, match="different number of classes"):
        gen.flow(x13, y13, subset="training")
    assert gen.flow(x13, y13, subset="training", ignore_class_split=True).n == 10


# -- ImageNet preprocessing -------------------------------------------------------------------

def test_preprocess_input_modes():
    x8 = RNG.randint(0, 256, (2, 3, 3, 3)).astype(np.uint8)
    before = x8.copy()
    tf = imagenet_utils.preprocess_input(x8, mode="tf")
    assert tf.dtype == np.float32
    np.testing.assert_array_equal(tf, x8.astype(np.float32) / 127.5 - 1)
    np.testing.assert_array_equal(x8, before)
    x = x8.astype(np.float32)
    np.testing.assert_array_equal(imagenet_utils.preprocess_input(x[0], mode="tf"), tf[0])
    np.testing.assert_array_equal(x, before)  # floats are not modified in place either
    caffe = imagenet_utils.preprocess_input(x)
    np.testing.assert_allclose(caffe, x[..., ::-1] - [103.939, 116.779, 123.68], atol=1e-4)
    torch = imagenet_utils.preprocess_input(x, mode="torch")
    np.testing.assert_allclose(torch, (x / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225],
                               atol=1e-5)
    first = imagenet_utils.preprocess_input(x.transpose(0, 3, 1, 2), "channels_first")
    np.testing.assert_allclose(first.transpose(0, 2, 3, 1), caffe)
    assert imagenet_utils.preprocess_input(x.astype(np.float64), mode="tf").dtype == np.float64
    with pytest.raises(ValueError):
        imagenet_utils.preprocess_input(x, mode="keras")


# -- the shared dataset -----------------------------------------------------------------------

def test_shared_sign_language_digits(shared_dir):
    root = shared_dir / "data" / "sign-language-digits"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    it = ImageDataGenerator().flow_from_directory(str(root), target_size=(224, 224),
                                                  batch_size=10, shuffle=False)
    assert (it.samples, it.num_classes, len(it)) == (1768, 10, 177)
    assert it.class_indices == {str(d): d for d in range(10)}
    big = [j for j, p in enumerate(it.filepaths) if Image.open(p).size == (3024, 3024)]
    assert len(big) == 2
    for j in big:
        x, y = it[j // 10]
        np.testing.assert_array_equal(x[j % 10], pil_nearest(it.filepaths[j], (224, 224)))
        assert y[j % 10].argmax() == it.classes[j] == 7


@pytest.mark.keras
@pytest.mark.parametrize("size", [(37, 20), (20, 37), (30, 30)])
def test_keep_aspect_ratio_crops_as_keras(tmp_path, size):
    """load_img / flow_from_directory(keep_aspect_ratio=True): the central crop with the
    target's aspect ratio, resized; the same pixels as keras.utils.load_img."""
    keras = pytest.importorskip("tensorflow").keras
    (tmp_path / "c").mkdir()
    path = tmp_path / "c" / "x.png"
    Image.fromarray(RNG.randint(0, 256, (size[1], size[0], 3)).astype(np.uint8)).save(path)
    for target in [(16, 24), (24, 16)]:
        ours = img_to_array(load_img(path, target_size=target, keep_aspect_ratio=True))
        theirs = np.asarray(keras.utils.load_img(path, target_size=target,
                                                 keep_aspect_ratio=True), np.float32)
        np.testing.assert_array_equal(ours, theirs)
        it = ImageDataGenerator().flow_from_directory(str(tmp_path), target_size=target,
                                                      keep_aspect_ratio=True, batch_size=1)
        np.testing.assert_array_equal(it[0][0][0], ours)
        plain = img_to_array(load_img(path, target_size=target))
        assert not np.array_equal(plain, ours)          # no size here has the target's ratio


# -- a data-parallel rank's slice ----------------------------------------------------------

@pytest.mark.parametrize("rows", [(1, 3), (0, 0), (2, 4)])
def test_a_rank_decodes_only_its_slice_with_the_same_draws(tree, decodes, fresh_cache, rows):
    """fit under DataParallel asks an iterator for batch k's rows [lo, hi) only
    (``_batch_part``): those rows equal the full batch's, bit for bit with seeded
    augmentation, the rest are zeros, only they are decoded, and the iterator goes on
    as after ``it[k]`` (the same random state for the next batch)."""
    gen = dict(rotation_range=20, zoom_range=0.2, horizontal_flip=True)
    full = ImageDataGenerator(**gen).flow_from_directory(str(tree), target_size=(8, 6),
                                                         batch_size=4, seed=5)
    part = ImageDataGenerator(**gen).flow_from_directory(str(tree), target_size=(8, 6),
                                                         batch_size=4, seed=5)
    want_x, want_y = full[0]
    fresh_cache.clear()
    decodes.clear()
    got_x, got_y = part._batch_part(0, lambda n: rows)
    lo, hi = rows
    assert len(decodes) == hi - lo
    np.testing.assert_array_equal(got_x[lo:hi], want_x[lo:hi])
    assert not got_x[:lo].any() and not got_x[hi:].any()
    np.testing.assert_array_equal(got_y, want_y)
    np.testing.assert_array_equal(part[1][0], full[1][0])      # the same draws after


def test_an_array_iterator_transforms_only_the_slice():
    x = np.random.default_rng(0).uniform(0, 255, (6, 5, 5, 3)).astype(np.float32)
    y = np.arange(6)
    gen = ImageDataGenerator(width_shift_range=0.3, vertical_flip=True)
    full, part = (gen.flow(x, y, batch_size=5, seed=2, shuffle=True) for _ in range(2))
    want = full[0]
    got = part._batch_part(0, lambda n: (3, n))
    np.testing.assert_array_equal(got[0][3:], want[0][3:])
    assert not got[0][:3].any()
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(part[1][0], full[1][0])
