"""aslnet.utils.image_dataset_from_directory against Keras 3's own (same folder, same arguments):
class names, which files land in which subset, label encodings, image values, cardinality,
messages; determinism, decode-once, and clear errors."""
import threading

import numpy as np
import pytest
from PIL import Image

from aslnet.preprocessing.image import image_cache
from aslnet.utils import image_dataset, image_dataset_from_directory

# Image values.  Both sides decode the same 8-bit pixels (lossless files; JPEGs through the
# same accurate IDCT, below) and resize them with the same float32 formula (tf.image.resize's
# bilinear: two lerps in x, one in y, weights from (i + 0.5) * in/out - 0.5).  Values are at
# most 255, where a float32 rounding is at most 2**-17 * 255 / 128 ~ 7.6e-6 (half an ulp at
# 255, ulp = 2**-16); the formula has 6 roundings per output (3 subtractions-multiplications-
# additions pairs) and the coordinate weights one or two more, and a compiler may fuse a
# multiply-add (one rounding fewer): the outputs can differ by a few ulps, well below
# 16 ulps = 16 * 2**-16 * 2 ~ 5e-4 even at 255.  Any real difference of method (antialiasing,
# corner alignment, an off-by-one pixel) moves values by whole grey levels.
ATOL = 5e-4


def _keras():
    try:
        tf = pytest.importorskip("tensorflow")
        keras = pytest.importorskip("keras")
    except ImportError as exc:
        pytest.skip(f"TensorFlow does not import: {exc}")
    if int(keras.__version__.split(".")[0]) < 3:
        pytest.skip(f"needs Keras 3, found {keras.__version__}")
    return tf, keras


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """3 classes, 24 images of assorted sizes, modes and formats; things Keras ignores."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    counts = {"zebra": 8, "cat": 7, "dog": 9}
    modes = ["RGB", "L", "RGBA", "P"]
    k = 0
    for cls, n in counts.items():
        for i in range(n):
            sub = root / cls / ("sub" if cls == "dog" and i < 3 else "")
            sub.mkdir(parents=True, exist_ok=True)
            h, w = rng.integers(8, 48, 2)
            mode = modes[k % len(modes)]
            ext = [".png", ".PNG", ".bmp", ".png", ".gif"][k % 5] if mode != "RGBA" else ".png"
            if mode == "P" and ext == ".bmp":
                ext = ".png"
            pixels = rng.integers(0, 256, (h, w, 4 if mode == "RGBA" else 3), dtype=np.uint8)
            img = Image.fromarray(pixels, "RGBA" if mode == "RGBA" else "RGB")
            if mode == "L":
                img = img.convert("L")
            elif mode == "P" or ext == ".gif":
                img = img.convert("P")
            img.save(sub / f"img_{k:02d}{ext}")
            k += 1
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / ".ipynb_checkpoints").mkdir()
    Image.fromarray(np.full((8, 8, 3), 7, np.uint8)).save(root / ".ipynb_checkpoints" / "x.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "top_level.png")
    return root


@pytest.fixture(scope="module")
def png_folder(folder, tmp_path_factory):
    """The folder without its GIFs and BMPs, which TensorFlow decodes to RGB(A) only (Keras
    fails on them in grayscale; aslnet converts them as Pillow does)."""
    import shutil
    root = tmp_path_factory.mktemp("images") / "png"
    shutil.copytree(folder, root)
    for path in list(root.rglob("*.gif")) + list(root.rglob("*.bmp")):
        path.unlink()
    return root


def _both(folder, capsys, **kw):
    """(ours, Keras's, our printed lines, Keras's printed lines) for the same call."""
    _, keras = _keras()
    image_cache.clear()
    ours = image_dataset_from_directory(str(folder), **kw)
    ours_out = capsys.readouterr().out
    theirs = keras.utils.image_dataset_from_directory(str(folder), **kw)
    return ours, theirs, ours_out, capsys.readouterr().out


def _pairs(ours, theirs):
    """The datasets' elements side by side (unshuffled: same order)."""
    ours_items, their_items = list(ours), list(theirs)
    assert len(ours_items) == len(their_items)
    return zip(ours_items, their_items)


def _check_same_elements(ours, theirs):
    for a, b in _pairs(ours, theirs):
        a, b = (a, b) if isinstance(a, tuple) else ((a,), (b,))
        assert len(a) == len(b)
        xa, xb = a[0], b[0].numpy()
        assert xa.dtype == np.float32 and xa.shape == xb.shape
        np.testing.assert_allclose(xa, xb.astype(np.float32), rtol=0, atol=ATOL)
        for ya, yb in zip(a[1:], b[1:]):
            assert ya.dtype == yb.numpy().dtype and ya.shape == tuple(yb.shape)
            np.testing.assert_array_equal(ya, yb.numpy())


@pytest.mark.keras
@pytest.mark.parametrize("subset", ["training", "validation", "both"])
@pytest.mark.parametrize("label_mode", ["int", "categorical", None])
def test_listing_split_and_labels_as_keras(folder, capsys, subset, label_mode):
    kw = dict(validation_split=0.3, subset=subset, seed=1337, image_size=(20, 24),
              batch_size=5, label_mode=label_mode)
    ours, theirs, ours_out, their_out = _both(folder, capsys, **kw)
    assert ours_out == their_out          # "Found 24 files belonging to 3 classes." ...
    # without labels Keras lists every image file under the folder, classes or not
    assert ours_out.startswith("Found 26 files.\nUsing " if label_mode is None else
                               "Found 24 files belonging to 3 classes.\nUsing ")
    if subset == "both":
        assert isinstance(ours, tuple) and len(ours) == 2
    else:
        ours, theirs = (ours,), (theirs,)
    for a, b in zip(ours, theirs):
        assert a.class_names == b.class_names == (["cat", "dog", "zebra"] if label_mode
                                                   else None)
        assert a.file_paths == b.file_paths            # the same files, in the same order
        assert a.cardinality() == b.cardinality().numpy() and len(a) == len(b)
        # shuffled batches (a new order each pass): one pass of each, each of our images
        # matched with Keras's of the same values
        ea, eb = [e if label_mode else (e,) for e in a], [e if label_mode else (e,) for e in b]
        xa = np.concatenate([e[0] for e in ea])
        xb = np.concatenate([e[0].numpy() for e in eb])
        nearest = np.abs(xa[:, None] - xb[None]).reshape(len(xa), len(xb), -1).max(-1)
        match = nearest.argmin(1)
        assert sorted(match) == list(range(len(xb))) and nearest.min(1).max() <= ATOL
        if label_mode:
            ya = np.concatenate([e[1] for e in ea])
            yb = np.concatenate([e[1].numpy() for e in eb])
            np.testing.assert_array_equal(ya, yb[match])
            assert ya.dtype == yb.dtype


CASES = [
    dict(image_size=(9, 7)),                                   # shrink, non-square
    dict(image_size=(61, 50), label_mode="categorical"),       # enlarge
    dict(image_size=(16, 40), crop_to_aspect_ratio=True),
    dict(image_size=(16, 40), pad_to_aspect_ratio=True),
    dict(image_size=(30, 17), interpolation="nearest"),
    dict(image_size=(12, 12), color_mode="grayscale"),
    dict(image_size=(12, 12), color_mode="rgba"),
    dict(image_size=(12, 14), data_format="channels_first"),
    dict(image_size=13, batch_size=None),
    dict(image_size=(10, 10), label_mode="binary", class_names=["dog", "cat"]),
    dict(image_size=(10, 10), labels=None),
    dict(image_size=(10, 10), labels="explicit", label_mode="int"),
]


@pytest.mark.keras
@pytest.mark.parametrize("kw", CASES,
                         ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items())[:60])
def test_values_as_keras(folder, png_folder, capsys, kw):
    kw = dict(dict(shuffle=False, batch_size=4), **kw)
    if kw.get("labels") == "explicit":     # one label per image file under the folder
        _, keras = _keras()
        n = len(keras.utils.image_dataset_from_directory(
            str(folder), labels=None, shuffle=False, batch_size=None).file_paths)
        kw["labels"] = [i % 3 for i in range(n)]
        capsys.readouterr()
    if kw.get("color_mode", "rgb") != "rgb":
        folder = png_folder
    ours, theirs, ours_out, their_out = _both(folder, capsys, **kw)
    assert ours_out == their_out
    assert ours.class_names == getattr(theirs, "class_names", None)
    assert ours.file_paths == theirs.file_paths
    assert ours.cardinality() == theirs.cardinality().numpy()
    _check_same_elements(ours, theirs)


@pytest.mark.keras
def test_jpeg_values_are_tf_resize_of_the_accurate_idct(tmp_path):
    """JPEGs: Pillow's decode is libjpeg's accurate IDCT; Keras (tf.image.decode_image) uses
    the fast one, a few grey levels away.  With the same decode, the same numbers."""
    tf, _ = _keras()
    rng = np.random.default_rng(1)
    (tmp_path / "a").mkdir()
    smooth = np.cumsum(rng.integers(0, 9, (40, 56, 3)), axis=1) % 256
    Image.fromarray(smooth.astype(np.uint8)).save(tmp_path / "a" / "p.jpg", quality=85)
    ds = image_dataset_from_directory(str(tmp_path), image_size=(33, 21), shuffle=False,
                                      verbose=False)
    x = next(iter(ds))[0][0]
    decoded = tf.io.decode_jpeg(tf.io.read_file(str(tmp_path / "a" / "p.jpg")), channels=3,
                                dct_method="INTEGER_ACCURATE")
    np.testing.assert_allclose(x, tf.image.resize(decoded, (33, 21)).numpy(), rtol=0,
                               atol=ATOL)
    gray = image_dataset_from_directory(str(tmp_path), image_size=(40, 56), shuffle=False,
                                        verbose=False, color_mode="grayscale")
    decoded = tf.io.decode_jpeg(tf.io.read_file(str(tmp_path / "a" / "p.jpg")), channels=1,
                                dct_method="INTEGER_ACCURATE")
    np.testing.assert_array_equal(next(iter(gray))[0][0], decoded.numpy())   # no resize


def test_same_seed_same_batches_each_pass_reshuffled(folder):
    kw = dict(validation_split=0.25, subset="training", seed=7, image_size=(8, 8),
              batch_size=4, verbose=False)
    a = image_dataset_from_directory(str(folder), **kw)
    b = image_dataset_from_directory(str(folder), **kw)
    epochs_a = [[(x.copy(), y.copy()) for x, y in a] for _ in range(2)]
    epochs_b = [[(x.copy(), y.copy()) for x, y in b] for _ in range(2)]
    for ea, eb in zip(epochs_a, epochs_b):
        for (xa, ya), (xb, yb) in zip(ea, eb):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
    labels = [np.concatenate([y for _, y in e]) for e in epochs_a]
    assert sorted(labels[0]) == sorted(labels[1])
    assert not np.array_equal(np.concatenate([x for x, _ in epochs_a[0]]),
                              np.concatenate([x for x, _ in epochs_a[1]]))
    ids = [i for _, batch in a._iter_with_ids() for i in batch]
    assert sorted(ids) == list(range(18))              # every file once per pass
    other = image_dataset_from_directory(str(folder), **dict(kw, seed=8))
    assert set(other.file_paths) != set(a.file_paths)
    val = image_dataset_from_directory(str(folder), **dict(kw, subset="validation"))
    assert not set(val.file_paths) & set(a.file_paths)
    assert len(val.file_paths) + len(a.file_paths) == 24


def test_images_are_decoded_once_in_worker_threads(folder, monkeypatch):
    decoded, threads = [], set()
    real = image_dataset._decode

    def counting(path, color_mode):
        decoded.append(path)
        threads.add(threading.get_ident())
        return real(path, color_mode)

    monkeypatch.setattr(image_dataset, "_decode", counting)
    image_cache.clear()
    ds = image_dataset_from_directory(str(folder), image_size=(64, 64), batch_size=8,
                                      seed=0, verbose=False)
    first = [(x.copy(), y.copy()) for x, y in ds.unbatch().batch(24)]
    for _ in range(2):
        list(ds)
    assert sorted(decoded) == sorted(ds.file_paths)    # 3 passes, each file decoded once
    assert threading.get_ident() not in threads
    again = [(x.copy(), y.copy()) for x, y in ds.unbatch().batch(24)]
    assert sorted(map(bytes, first[0][0])) == sorted(map(bytes, again[0][0]))  # from the cache


def test_tensorflow_tutorial_idioms(folder):
    ds = image_dataset_from_directory(str(folder), image_size=(8, 8), batch_size=6, seed=1,
                                      verbose=False)
    for images, labels in ds.take(1):
        assert images[0].numpy().astype("uint8").shape == (8, 8, 3)
        assert ds.class_names[labels[0]] in ("cat", "dog", "zebra")
        assert images.dtype == np.float32 and labels.dtype == np.int32
        assert 0 <= images.min() and images.max() <= 255
    chained = ds.cache().shuffle(100).prefetch(buffer_size=-1)
    assert chained.class_names == ds.class_names and len(chained) == 4


@pytest.mark.parametrize("kw,error,match", [
    (dict(validation_split=0.2), ValueError, "`subset` is set, `validation_split` must be set"),
    (dict(subset="training"), ValueError, "`validation_split` must be set"),
    (dict(validation_split=0.2, subset="training"), ValueError, "must provide a `seed`"),
    (dict(validation_split=1.5, subset="training", seed=1), ValueError, "between 0 and 1"),
    (dict(validation_split=0.2, subset="train", seed=1), ValueError, '"training", "validation"'),
    (dict(label_mode="sparse"), ValueError, "`label_mode` argument must be one of"),
    (dict(label_mode="binary"), ValueError, "exactly 2 class_names"),
    (dict(image_size=(10, 10, 3)), ValueError, "Expected a tuple of 2 integers"),
    (dict(image_size="224"), ValueError, "Expected a tuple of 2 integers"),
    (dict(image_size=(0, 10)), ValueError, "positive integers"),
    (dict(color_mode="bgr"), ValueError, "color_mode"),
    (dict(interpolation="bicubic"), ValueError, "not supported by aslnet.*'bilinear'"),
    (dict(interpolation="cubic"), ValueError, "should be one of"),
    (dict(crop_to_aspect_ratio=True, pad_to_aspect_ratio=True), ValueError, "Only one of"),
    (dict(class_names=["cat", "horse"]), ValueError, "did not match the names"),
    (dict(labels=[0, 1]), ValueError, "match the number of files"),
    (dict(labels="folders"), ValueError, 'labels="inferred"'),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(validation_split=0.01, subset="training", seed=1), ValueError,
     "leaves no validation file"),
    (dict(format="grain"), ValueError, "format"),
])
def test_bad_arguments_are_refused_clearly(folder, kw, error, match):
    with pytest.raises(error, match=match):
        image_dataset_from_directory(str(folder), verbose=False, **kw)


def test_empty_missing_and_broken_folders(tmp_path):
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="No images found in directory"):
        image_dataset_from_directory(str(tmp_path / "empty"), verbose=False)
    with pytest.raises(FileNotFoundError, match="no folder"):
        image_dataset_from_directory(str(tmp_path / "nowhere"))
    (tmp_path / "broken" / "a").mkdir(parents=True)
    (tmp_path / "broken" / "a" / "x.png").write_text("not a png")
    ds = image_dataset_from_directory(str(tmp_path / "broken"), verbose=False)
    with pytest.raises(ValueError, match="cannot decode .*x.png.*remove the file"):
        list(ds)


def test_fit_loads_images_once_with_the_trunk_cache_and_trains_the_same(folder, monkeypatch):
    """An un-mapped image dataset tells fit its sample ids: the frozen trunk is computed once
    per image, and later epochs do not even load the images; history and weights are exactly
    those of a fit that recomputes (and reloads) everything."""
    from aslnet.optimizers import Adam
    from tests.model_fixtures import small_model
    loads = []
    real = image_dataset._Loader.__call__
    monkeypatch.setattr(image_dataset._Loader, "__call__",
                        lambda self, path: loads.append(path) or real(self, path))
    runs = []
    for cache_bytes in (1 << 30, 0):
        loads.clear()
        train, val = image_dataset_from_directory(
            str(folder), validation_split=0.25, subset="both", seed=3, image_size=(16, 16),
            batch_size=5, verbose=False)
        model = small_model()
        model.freeze(upto=-4)
        model.trunk_cache_bytes = cache_bytes
        model.compile(Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"])
        h = model.fit(train, validation_data=val, epochs=3, verbose=0)
        runs.append((h.history, model.get_weights(), len(loads)))
    (hc, wc, loads_cached), (hp, wp, loads_plain) = runs
    assert (loads_cached, loads_plain) == (18 + 6, 3 * (18 + 6))
    assert hc == hp
    for a, b in zip(wc, wp):
        np.testing.assert_array_equal(a, b)


def test_skipped_batches_load_on_demand_even_after_the_pass(folder):
    """fit asks the source to leave cached batches unloaded (Deferred); should its cache fail
    meanwhile, it loads them then, after the pass and its decoding threads are gone."""
    from aslnet.data import Deferred
    ds = image_dataset_from_directory(str(folder), image_size=(8, 8), batch_size=5,
                                      shuffle=False, verbose=False)
    pairs = list(ds._iter_with_ids(skip=lambda ids: ids[0] % 2 == 0))
    assert [isinstance(x, Deferred) for (x, _), _ in pairs] == [True, False, True, False, True]
    for ((x, y), ids), (xe, ye) in zip(pairs, ds):
        np.testing.assert_array_equal(x.load() if isinstance(x, Deferred) else x, xe)
        np.testing.assert_array_equal(y, ye)
    assert all(not isinstance(e[0], Deferred) for e in ds)    # plain iteration: all loaded


def test_a_rank_loads_only_its_slice_of_each_batch(folder, monkeypatch):
    """fit under DataParallel passes its slice (``part``) down to the files: each batch
    decodes only rows [lo, hi), which equal the full batch's; the rest are zeros."""
    from aslnet.trainers.data_adapters import DataStream
    image_cache.clear()
    ds = image_dataset_from_directory(str(folder), image_size=(16, 16), batch_size=8,
                                      shuffle=False, verbose=False)
    full = [(x.copy(), y.copy()) for x, y in ds]
    image_cache.clear()
    decoded = []
    real = image_dataset._decode
    monkeypatch.setattr(image_dataset, "_decode",
                        lambda path, mode: decoded.append(path) or real(path, mode))
    span = lambda n: (n // 2, n)             # noqa: E731  (rank 1 of 2)
    stream = DataStream(ds, None, None, False, part=span)
    got = [(xb, yb) for xb, yb, _, _ in stream.epoch(None)]
    assert len(decoded) == sum(len(y) - len(y) // 2 for _, y in full)
    for (xb, yb), (x, y) in zip(got, full):
        lo = len(y) // 2
        np.testing.assert_array_equal(xb[lo:], x[lo:])
        assert not np.asarray(xb[:lo]).any()
        np.testing.assert_array_equal(yb, y)
