"""Keras 3's ``image_dataset_from_directory``, returning an ``aslnet.data.Dataset``.

Semantics as Keras 3 (``keras.src.utils.image_dataset_utils`` and
``dataset_utils``): the same listing (class folders sorted, hidden ones left
out; files by extension, walked in sorted order), the same global shuffle of
the file list (``np.random.RandomState(seed)``) and validation split (the last
``int(validation_split * n)`` files), so a seed puts the same files in the same
subset as Keras; the same messages; float32 images in [0, 255], resized as
``tf.image.resize`` does (half-pixel centres, no antialiasing), labels int32 /
one-hot float32 / (n, 1) float32.  The batch order within an epoch uses
TensorFlow's buffer shuffle (a buffer of 8 batches, reshuffled each pass) with
a different random stream: the same subsets, not the same batch order.

Images are decoded once per process (the shared ``preprocessing.image.image_cache``,
bounded by its ``max_bytes``), in parallel threads (Pillow releases the GIL),
as the batches that need them are first read; ``fit`` with the frozen-trunk cache
does not even load the batches whose trunk features it holds (as for image
iterators: later epochs read no images).  JPEGs are decoded with libjpeg's
accurate integer IDCT (Pillow's); TensorFlow's ``decode_image`` uses the fast
one, so on JPEGs Keras's pixels differ from these by a few levels (up to ~14
measured on the sign-language digits); PNG, BMP and GIF decode identically.
"""
import functools
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from ..preprocessing.image import image_cache
from .dataset_ops import AUTOTUNE, Dataset, Deferred, EagerArray, _shuffled

__all__ = ["image_dataset_from_directory", "ALLOWLIST_FORMATS"]

ALLOWLIST_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
_CHANNELS = {"rgb": 3, "rgba": 4, "grayscale": 1}
_KERAS_INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5",
                         "gaussian", "mitchellcubic")
_SUPPORTED_INTERPOLATIONS = ("bilinear", "nearest")


def image_dataset_from_directory(directory, labels="inferred", label_mode="int",
                                 class_names=None, color_mode="rgb", batch_size=32,
                                 image_size=(256, 256), shuffle=True, seed=None,
                                 validation_split=None, subset=None,
                                 interpolation="bilinear", follow_links=False,
                                 crop_to_aspect_ratio=False, pad_to_aspect_ratio=False,
                                 data_format=None, format="tf", verbose=True):
    """A dataset of (images, labels) batches from ``directory/<class>/<images>``, as
    Keras 3's ``keras.utils.image_dataset_from_directory`` (see its documentation for
    the arguments).  Returns an :class:`aslnet.data.Dataset` with ``class_names`` and
    ``file_paths``, or a (training, validation) pair with ``subset="both"``.
    ``interpolation``: 'bilinear' or 'nearest' (Keras's other methods are refused);
    ``format``: 'tf' (an aslnet dataset, which needs no TensorFlow)."""
    labels, label_mode = _check_labels(labels, label_mode, class_names)
    if color_mode not in _CHANNELS:
        raise ValueError('`color_mode` must be one of {"rgb", "rgba", "grayscale"}. '
                         f"Received: color_mode={color_mode}")
    image_size = _check_image_size(image_size)
    interpolation = _check_interpolation(interpolation)
    if batch_size is not None and (isinstance(batch_size, bool) or
                                   not isinstance(batch_size, (int, np.integer))
                                   or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    if crop_to_aspect_ratio and pad_to_aspect_ratio:
        raise ValueError("Only one of `pad_to_aspect_ratio`, `crop_to_aspect_ratio` can be "
                         "set to `True`.")
    if format != "tf":
        raise ValueError(f'format={format!r} is not supported: aslnet returns its own dataset '
                         '(format="tf", tf.data\'s methods, no TensorFlow needed)')
    if data_format is None:
        from .. import backend       # Keras's keras.config.image_data_format()
        data_format = getattr(backend, "image_data_format", lambda: "channels_last")()
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(f"data_format must be 'channels_last' or 'channels_first', got "
                         f"{data_format!r}")
    _check_validation_split(validation_split, subset, shuffle, seed)
    if seed is None:
        seed = np.random.randint(1e6)            # Keras: NumPy's global generator
    paths, labels, class_names = _index_directory(directory, labels, class_names, shuffle,
                                                  seed, follow_links, verbose)
    if label_mode == "binary" and len(class_names) != 2:
        raise ValueError('When passing `label_mode="binary"`, there must be exactly 2 '
                         f"class_names. Received: class_names={class_names}")
    make = dict(image_size=image_size, color_mode=color_mode, label_mode=label_mode,
                num_classes=len(class_names) if class_names else 0,
                interpolation=interpolation, crop=bool(crop_to_aspect_ratio),
                pad=bool(pad_to_aspect_ratio), data_format=data_format,
                batch_size=batch_size, seed=seed)
    buffer = batch_size * 8 if batch_size is not None else 1024
    if subset == "both":
        train = _split(paths, labels, validation_split, "training")
        val = _split(paths, labels, validation_split, "validation")
        for (p, _), name in ((train, "training"), (val, "validation")):
            if not p:
                raise ValueError(f"No {name} images found in directory {directory}. "
                                 f"Allowed formats: {ALLOWLIST_FORMATS}")
        return (_dataset(*train, class_names, shuffle_buffer=buffer if shuffle else 0, **make),
                _dataset(*val, class_names, shuffle_buffer=0, **make))
    paths, labels = _split(paths, labels, validation_split, subset)
    if not paths:
        raise ValueError(f"No images found in directory {directory}. "
                         f"Allowed formats: {ALLOWLIST_FORMATS}")
    return _dataset(paths, labels, class_names, shuffle_buffer=buffer if shuffle else 0, **make)


# -- arguments, as Keras checks them --------------------------------------------
def _check_labels(labels, label_mode, class_names):
    if not (isinstance(labels, str) and labels == "inferred") and labels is not None:
        if not isinstance(labels, (list, tuple, np.ndarray)):
            raise ValueError(
                "`labels` argument should be a list/tuple of integer labels, of the same size "
                "as the number of image files in the target directory. If you wish to infer "
                'the labels from the subdirectory names in the target directory, pass '
                '`labels="inferred"`. If you wish to get a dataset that only contains images '
                f"(no labels), pass `labels=None`. Received: labels={labels}")
        if class_names:
            raise ValueError('You can only pass `class_names` if `labels="inferred"`. '
                             f"Received: labels={labels}, and class_names={class_names}")
        labels = list(labels)
    if label_mode not in ("int", "categorical", "binary", None):
        raise ValueError('`label_mode` argument must be one of "int", "categorical", '
                         f'"binary", or None. Received: label_mode={label_mode}')
    if labels is None or label_mode is None:
        return None, None
    return labels, label_mode


def _check_image_size(image_size):
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    if not isinstance(image_size, (list, tuple)) or len(image_size) != 2:
        raise ValueError("Invalid `image_size` value. Expected a tuple of 2 integers "
                         f"(height, width). Received: image_size={image_size}")
    for d in image_size:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
            raise ValueError("Invalid `image_size` value: height and width must be positive "
                             f"integers. Received: image_size={image_size}")
    return int(image_size[0]), int(image_size[1])


def _check_interpolation(interpolation):
    name = str(interpolation).lower()
    if name not in _KERAS_INTERPOLATIONS:
        raise ValueError(f"Argument `interpolation` should be one of {_KERAS_INTERPOLATIONS}. "
                         f"Received: interpolation={interpolation}")
    if name not in _SUPPORTED_INTERPOLATIONS:
        raise ValueError(f"interpolation={interpolation!r} is not supported by aslnet's "
                         f"image_dataset_from_directory (Keras has it): use 'bilinear' (the "
                         "default, as tf.image.resize) or 'nearest'")
    return name


def _check_validation_split(validation_split, subset, shuffle, seed):
    """Keras's ``dataset_utils.check_validation_split_arg``, same messages."""
    if validation_split and not 0 < validation_split < 1:
        raise ValueError(f"`validation_split` must be between 0 and 1, received: "
                         f"{validation_split}")
    if (validation_split or subset) and not (validation_split and subset):
        raise ValueError("If `subset` is set, `validation_split` must be set, and inversely.")
    if subset not in ("training", "validation", "both", None):
        raise ValueError(f'`subset` must be either "training", "validation" or "both", '
                         f"received: {subset}")
    if validation_split and shuffle and seed is None:
        raise ValueError("If using `validation_split` and shuffling the data, you must "
                         "provide a `seed` argument, to make sure that there is no overlap "
                         "between the training and validation subset.")


# -- listing and splitting, as Keras's dataset_utils -----------------------------
def _index_directory(directory, labels, class_names, shuffle, seed, follow_links, verbose):
    """(file paths, int32 labels or None, class names) in Keras's order."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"image_dataset_from_directory: no folder {directory!r}")
    if labels is not None and not isinstance(labels, list):      # "inferred"
        subdirs = [d.rstrip("/") for d in sorted(os.listdir(directory))
                   if os.path.isdir(os.path.join(directory, d)) and not d.startswith(".")]
        if class_names is not None:
            if not set(class_names).issubset(set(subdirs)):
                raise ValueError(
                    "The `class_names` passed did not match the names of the subdirectories "
                    f"of the target directory. Expected: {subdirs} (or a subset of it), but "
                    f"received: class_names={class_names}")
            subdirs = list(class_names)
    else:
        subdirs = [""]
        if class_names is not None:
            raise ValueError("When `labels=None` (no labels), argument `class_names` cannot "
                             "be specified." if labels is None else
                             "When argument `labels` is specified, argument `class_names` "
                             "cannot be specified (the `class_names` will be the sorted "
                             "list of labels).")
    class_names = subdirs
    with ThreadPoolExecutor() as pool:
        listed = list(pool.map(lambda d: _list_files(os.path.join(directory, d), follow_links),
                               subdirs))
    filenames = [f for files in listed for f in files]
    if labels is None:
        class_names = None
    elif isinstance(labels, list):
        if len(labels) != len(filenames):
            raise ValueError(
                "Expected the lengths of `labels` to match the number of files in the target "
                f"directory. len(labels) is {len(labels)} while we found {len(filenames)} "
                f"files in directory {directory}.")
        class_names = [str(label) for label in sorted(set(labels))]
        labels = np.asarray(labels, dtype="int32")
    else:
        labels = np.repeat(np.arange(len(listed), dtype="int32"), [len(f) for f in listed])
    if verbose:
        print(f"Found {len(filenames)} files." if labels is None else
              f"Found {len(filenames)} files belonging to {len(class_names)} classes.")
    paths = [os.path.join(directory, f) for f in filenames]
    if shuffle:                       # Keras shuffles the whole list once, by NumPy
        np.random.RandomState(seed).shuffle(paths)
        if labels is not None:
            np.random.RandomState(seed).shuffle(labels)
    return paths, labels, class_names


def _list_files(folder, follow_links):
    """Image files under ``folder`` as paths relative to its parent (Keras's
    ``index_subdirectory``)."""
    dirname = os.path.basename(folder)
    out = []
    for root, _, files in sorted(os.walk(folder, followlinks=follow_links),
                                 key=lambda w: w[0]):
        for name in sorted(files):
            if name.lower().endswith(ALLOWLIST_FORMATS):
                out.append(os.path.join(dirname, os.path.relpath(os.path.join(root, name),
                                                                 folder)))
    return out


def _split(paths, labels, validation_split, subset):
    """Keras's ``get_training_or_validation_split``: the last files for validation."""
    if not validation_split:
        return paths, labels
    n_val = int(validation_split * len(paths))
    if n_val == 0:        # Keras would hand out an empty training set (paths[:-0])
        raise ValueError(f"validation_split={validation_split} of {len(paths)} files leaves "
                         "no validation file: use a larger validation_split or more files")
    if subset == "training":
        print(f"Using {len(paths) - n_val} files for training.")
        return paths[:-n_val], (None if labels is None else labels[:-n_val])
    print(f"Using {n_val} files for validation.")
    return paths[-n_val:], (None if labels is None else labels[-n_val:])


# -- decoding and resizing as tf.image.resize --------------------------------------
def _linear_plan(n_in, n_out):
    """TensorFlow's bilinear weights (half-pixel centres, float32 arithmetic)."""
    scale = np.float32(n_in) / np.float32(n_out)
    x = (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    f = np.floor(x)
    lo = np.maximum(f.astype(np.int64), 0)
    hi = np.minimum(np.ceil(x).astype(np.int64), n_in - 1)
    return lo, hi, (x - f).astype(np.float32)


def _nearest_plan(n_in, n_out):
    scale = np.float32(n_in) / np.float32(n_out)
    x = (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * scale
    return np.clip(np.floor(x).astype(np.int64), 0, n_in - 1)


def resize(img, size, interpolation="bilinear"):
    """An (H, W, C) image resized to ``size`` = (height, width) as float32, computed as
    ``tf.image.resize`` computes it (antialias=False)."""
    h, w = size
    a = np.asarray(img)
    if interpolation == "nearest":
        return a[_nearest_plan(a.shape[0], h)][:, _nearest_plan(a.shape[1], w)] \
            .astype(np.float32)
    ylo, yhi, ly = _linear_plan(a.shape[0], h)
    xlo, xhi, lx = _linear_plan(a.shape[1], w)
    a = a.astype(np.float32, copy=False)
    # TensorFlow's top = tl + (tr - tl) * x_lerp is the x-interpolation of input row ylo
    # (bottom: of row yhi), so interpolating every input row in x first, then in y, gives
    # the same float32 operations in the same order, on fewer rows when enlarging
    rows, right = a[:, xlo], a[:, xhi]
    np.subtract(right, rows, out=right)
    right *= lx[None, :, None]
    rows += right
    top, bottom = rows[ylo], rows[yhi]
    np.subtract(bottom, top, out=bottom)
    bottom *= ly[:, None, None]
    top += bottom
    return top


def _fit(img, size, interpolation, crop, pad):
    """Keras's resize step: plain, ``crop_to_aspect_ratio`` (smart_resize) or
    ``pad_to_aspect_ratio`` (tf.image.resize_with_pad), float32 as TensorFlow."""
    height, width = img.shape[:2]
    th, tw = size
    f32 = np.float32
    if crop:
        ch = max(min(height, int(f32(width * th) / f32(tw))), 1)
        cw = max(min(width, int(f32(height * tw) / f32(th))), 1)
        top, left = int(f32(height - ch) / f32(2)), int(f32(width - cw) / f32(2))
        return resize(img[top:top + ch, left:left + cw], size, interpolation)
    if pad:
        ratio = max(f32(width) / f32(tw), f32(height) / f32(th))
        rh_f, rw_f = f32(height) / ratio, f32(width) / ratio
        rh, rw = int(np.floor(rh_f)), int(np.floor(rw_f))
        ph = max(0, int(np.floor((f32(th) - rh_f) / f32(2))))
        pw = max(0, int(np.floor((f32(tw) - rw_f) / f32(2))))
        out = np.zeros((th, tw, img.shape[2]), np.float32)
        out[ph:ph + rh, pw:pw + rw] = resize(img, (rh, rw), interpolation)
        return out
    return resize(img, size, interpolation)


def _decode(path, color_mode):
    """The image as a (H, W, C) uint8 array, converted as ``tf.image.decode_image`` converts
    it (grayscale: libpng's integer weights for PNG, libjpeg's luma for JPEG, else
    ITU-R 601 as Pillow; 16-bit PNGs: the high byte)."""
    try:
        with Image.open(path) as img:
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                a = (np.asarray(img).astype(np.uint32) >> 8).astype(np.uint8)
                img = Image.fromarray(a, "L")
            if color_mode == "grayscale":
                if img.format == "JPEG" and img.mode != "L":
                    img.draft("L", img.size)           # libjpeg's own luma, as TensorFlow
                if img.format == "PNG" and img.mode not in ("L", "LA"):
                    rgb = np.asarray(img.convert("RGB"), np.uint32)
                    # libpng's png_set_rgb_to_gray(0.299, 0.587) in its 15-bit fixed point
                    a = (9797 * rgb[..., 0] + 19234 * rgb[..., 1] + 3737 * rgb[..., 2]) >> 15
                    return a.astype(np.uint8)[:, :, None]
                img = img.convert("L") if img.mode != "L" else img
            elif img.mode != color_mode.upper():
                img = img.convert(color_mode.upper())
            a = np.asarray(img)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"image_dataset_from_directory: cannot decode {path}: {e} "
                         "(remove the file or move it out of the folder)") from e
    return a if a.ndim == 3 else a[:, :, None]


class _Loader:
    """Decode-once loading of one file into its float32 model image, through the
    process-wide image cache: small photos are kept decoded (resized again on each
    read: the same numbers), large ones kept resized, whichever is smaller."""

    def __init__(self, image_size, color_mode, interpolation, crop, pad, data_format):
        self.size, self.color_mode = image_size, color_mode
        self.interpolation, self.crop, self.pad = interpolation, crop, pad
        self.channels_first = data_format == "channels_first"

    @property
    def shape(self):
        """The shape of one loaded image."""
        h, w = self.size
        c = _CHANNELS[self.color_mode]
        return (c, h, w) if self.channels_first else (h, w, c)

    def __call__(self, path):
        st = os.stat(path)
        file_key = ("image_dataset", os.path.abspath(path), st.st_mtime_ns, st.st_size,
                    self.color_mode)
        sized_key = file_key + (self.size, self.interpolation, self.crop, self.pad)
        x = image_cache.get(sized_key)
        if x is None:
            decoded = image_cache.get(file_key)
            if decoded is None:
                decoded = _decode(path, self.color_mode)
            x = _fit(decoded, self.size, self.interpolation, self.crop, self.pad)
            if decoded.nbytes <= x.nbytes:
                image_cache.put(file_key, decoded)
            else:
                image_cache.put(sized_key, x)
        return x.transpose(2, 0, 1) if self.channels_first else x


def _encode(labels, label_mode, num_classes):
    if label_mode == "int":
        return labels.astype("int32")
    if label_mode == "binary":
        return labels.astype("float32")[:, None]
    out = np.zeros((len(labels), num_classes), np.float32)     # tf.one_hot: zeros outside
    ok = (labels >= 0) & (labels < num_classes)
    out[np.nonzero(ok)[0], labels[ok]] = 1.0
    return out


class _ImageFiles(Dataset):
    """The files of one subset: shuffled through a buffer (as Keras's pipeline),
    batched, and loaded batch by batch with the images decoded in parallel."""

    _takes_skip = True

    def __init__(self, paths, targets, loader, batch_size, shuffle_buffer, seed):
        super().__init__()
        self._paths, self._targets, self._load = list(paths), targets, loader
        self._batch_size, self._buffer, self._seed = batch_size, shuffle_buffer, seed
        self._passes = 0

    def _num_ids(self):
        return len(self._paths)

    def _cardinality(self):
        n = len(self._paths)
        return n if self._batch_size is None else math.ceil(n / self._batch_size)

    def _order(self):
        ids = range(len(self._paths))
        if not self._buffer:
            return iter(ids)
        rng = np.random.default_rng([self._seed, self._passes])
        self._passes += 1
        return (i for i, _ in _shuffled(((i, None) for i in ids), self._buffer, rng))

    def _pairs(self, skip=None, part=None):
        order = self._order()
        step = self._batch_size or 1
        with ThreadPoolExecutor(max_workers=min(32, os.cpu_count() or 1)) as pool:
            def load(ids, parallel=True):
                lo, hi = (0, len(ids)) if part is None or self._batch_size is None \
                    else part(len(ids))
                paths = [self._paths[i] for i in ids[lo:hi]]
                images = list(pool.map(self._load, paths) if parallel
                              else map(self._load, paths))
                if (lo, hi) == (0, len(ids)):
                    return np.stack(images).view(EagerArray)
                batch = np.zeros((len(ids),) + self._load.shape, np.float32)
                batch[lo:hi] = images    # (a rank's slice: the other rows stay zero)
                return batch.view(EagerArray)

            while True:
                ids = [i for _, i in zip(range(step), order)]
                if not ids:
                    return
                y = None if self._targets is None else self._targets[ids].view(EagerArray)
                if self._batch_size is None:
                    x = load(ids)[0]
                    y, ids = (None if y is None else y[0]), ids[0]
                else:
                    ids = np.asarray(ids, np.int64)
                    # fit's frozen-trunk cache holds these samples' features: load on demand
                    # (loaded here if at all: the pass may be over, its pool shut down)
                    x = Deferred(functools.partial(load, ids, parallel=False)) \
                        if skip is not None and skip(ids) else load(ids)
                yield (x if y is None else (x, y)), ids


def _dataset(paths, labels, class_names, *, image_size, color_mode, label_mode, num_classes,
             interpolation, crop, pad, data_format, batch_size, seed, shuffle_buffer):
    loader = _Loader(image_size, color_mode, interpolation, crop, pad, data_format)
    targets = None if label_mode is None else _encode(np.asarray(labels), label_mode,
                                                      num_classes)
    source = _ImageFiles(paths, targets, loader, batch_size, shuffle_buffer, seed)
    source.class_names, source.file_paths = class_names, list(paths)
    return source.prefetch(AUTOTUNE)
