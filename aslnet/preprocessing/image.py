"""Keras's image preprocessing (``keras.preprocessing.image``), channels last.

``ImageDataGenerator`` and its iterators follow Keras's semantics: the same
file listing and order, the same per-batch seeding (a seeded iterator yields
the same batches and augmentations as Keras's), the same nearest-neighbour
default resize.  Differences: NumPy replaces SciPy for the affine
augmentations (same results as ``scipy.ndimage.affine_transform``), seeding
never touches NumPy's global random state, files Pillow cannot identify are
skipped with a warning, and ``flow_from_directory`` caches decoded images
(see ``ImageCache``).
"""
import functools
import io
import os
import struct
import threading
import warnings
from multiprocessing.pool import ThreadPool

import numpy as np
from PIL import Image, ImageEnhance

__all__ = [
    "load_img", "img_to_array", "array_to_img", "save_img", "ImageDataGenerator",
    "Iterator", "DirectoryIterator", "NumpyArrayIterator", "ImageCache", "image_cache",
    "deterministic",
]

def is_deterministic(fn):
    """Whether ``preprocessing_function`` ``fn`` is known to compute a fixed
    function of the image: a Keras/aslnet ``preprocess_input``, or a
    function marked with :func:`deterministic`."""
    if getattr(fn, "aslnet_deterministic", False):
        return True
    target = getattr(fn, "func", fn)                  # functools.partial
    module = getattr(target, "__module__", "") or ""
    return getattr(target, "__name__", "") == "preprocess_input" and \
        module.split(".")[0] in ("aslnet", "keras", "tensorflow", "tf_keras")


def deterministic(fn):
    """Mark a ``preprocessing_function`` as deterministic (no randomness, no
    state): ``fit`` may then compute the frozen trunk once per image and
    reuse it in later epochs.  An unmarked function of your own is assumed
    to be random augmentation (the trunk is recomputed every epoch)."""
    fn.aslnet_deterministic = True
    return fn


_PIL_INTERPOLATION_METHODS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "hamming": Image.Resampling.HAMMING,
    "box": Image.Resampling.BOX,
    "lanczos": Image.Resampling.LANCZOS,
}
_PIL_MODES = {"grayscale": "L", "rgb": "RGB", "rgba": "RGBA"}
_CHANNELS = {"grayscale": 1, "rgb": 3, "rgba": 4}


def _check_data_format(data_format):
    if data_format not in {"channels_last", "channels_first"}:
        raise ValueError(f"Unknown data_format: {data_format}")


# what Pillow's decoders raise on malformed data besides OSError and ValueError (found
# by tools/fuzz/fuzz_image.py: a PNG with a broken chunk after the first IDAT raised
# SyntaxError from img_to_array)
_DECODE_ERRORS = (SyntaxError, EOFError, IndexError, KeyError, TypeError, ZeroDivisionError,
                  struct.error)


def load_img(path, color_mode="rgb", target_size=None, interpolation="nearest",
             keep_aspect_ratio=False):
    """Load an image file (path or file object) into a PIL image, as Keras does.

    color_mode: 'rgb', 'rgba' or 'grayscale' (16- and 32-bit grayscale images
    are kept as they are).  target_size: (height, width) or None; resizing
    uses ``interpolation`` ('nearest' by default, like Keras), of the central
    crop with the target's aspect ratio if ``keep_aspect_ratio``.
    """
    if color_mode not in _PIL_MODES:
        raise ValueError('color_mode must be "grayscale", "rgb", or "rgba"')
    if hasattr(path, "read"):
        img = Image.open(path)
    else:
        with open(path, "rb") as f:  # read at once: no file handle outlives the call
            img = Image.open(io.BytesIO(f.read()))
    try:
        img.load()      # decode here, so that a malformed file fails here, with an OSError
    except _DECODE_ERRORS as e:
        name = getattr(path, "name", "image") if hasattr(path, "read") else os.fspath(path)
        raise OSError(f"{name}: not a readable image ({type(e).__name__}: {e})") from e
    if color_mode == "grayscale":
        if img.mode not in ("L", "I;16", "I"):
            img = img.convert("L")
    elif img.mode != _PIL_MODES[color_mode]:
        img = img.convert(_PIL_MODES[color_mode])
    return _resize(img, target_size, interpolation, keep_aspect_ratio)


def _resize(img, target_size, interpolation, keep_aspect_ratio=False):
    """load_img's resizing: to (height, width) ``target_size`` unless None or
    equal; with ``keep_aspect_ratio``, of the largest central crop with the
    target's aspect ratio (Keras's box)."""
    if target_size is not None:
        width_height = (target_size[1], target_size[0])
        if img.size != width_height:
            if interpolation not in _PIL_INTERPOLATION_METHODS:
                raise ValueError(
                    f"Invalid interpolation method {interpolation} specified. Supported "
                    f"methods are {', '.join(_PIL_INTERPOLATION_METHODS)}")
            box = None
            if keep_aspect_ratio:
                width, height = img.size
                crop_h = min(height, (width * width_height[1]) // width_height[0])
                crop_w = min(width, (height * width_height[0]) // width_height[1])
                top, left = (height - crop_h) // 2, (width - crop_w) // 2
                box = (left, top, left + crop_w, top + crop_h)
            img = img.resize(width_height, _PIL_INTERPOLATION_METHODS[interpolation], box=box)
    return img


def _pil_nbytes(img):
    """Bytes a decoded PIL image holds (PIL keeps RGB pixels in 4 bytes)."""
    return img.width * img.height * {"1": 1, "L": 1, "P": 1, "I;16": 2}.get(img.mode, 4)


def img_to_array(img, data_format="channels_last", dtype="float32"):
    """A PIL image as a rank-3 NumPy array (height, width, channels)."""
    _check_data_format(data_format)
    x = np.asarray(img, dtype=dtype)
    if x.ndim == 2:
        x = x[:, :, np.newaxis]
    elif x.ndim != 3:
        raise ValueError(f"Unsupported image shape: {x.shape}")
    return x.transpose(2, 0, 1) if data_format == "channels_first" else x


def array_to_img(x, data_format="channels_last", scale=True, dtype="float32"):
    """A rank-3 array as a PIL image; ``scale`` stretches its values to [0, 255]."""
    _check_data_format(data_format)
    x = np.array(x, dtype=dtype)
    if x.ndim != 3:
        raise ValueError("Expected image array to have rank 3 (single image). "
                         f"Got array with shape: {x.shape}")
    if data_format == "channels_first":
        x = x.transpose(1, 2, 0)
    if scale:
        x -= np.min(x)
        x_max = np.max(x)
        if x_max != 0:
            x /= x_max
        x *= 255
    channels = x.shape[2]
    if channels == 4:
        return Image.fromarray(x.astype("uint8"), "RGBA")
    if channels == 3:
        return Image.fromarray(x.astype("uint8"), "RGB")
    if channels == 1:
        if np.max(x) > 255:  # 32-bit signed integer grayscale
            return Image.fromarray(x[:, :, 0].astype("int32"), "I")
        return Image.fromarray(x[:, :, 0].astype("uint8"), "L")
    raise ValueError(f"Unsupported channel number: {channels}")


def save_img(path, x, data_format="channels_last", file_format=None, scale=True, **kwargs):
    """Save a rank-3 array as an image file (extra arguments go to ``PIL.Image.save``)."""
    img = array_to_img(x, data_format=data_format, scale=scale)
    if img.mode == "RGBA" and file_format in ("jpg", "jpeg"):
        warnings.warn("The JPG format does not support RGBA images, converting to RGB.")
        img = img.convert("RGB")
    img.save(path, format=file_format, **kwargs)


class ImageCache:
    """Decoded images that ``flow_from_directory`` iterators keep between epochs.

    One instance, ``image_cache``, is shared by every iterator of the process,
    so an image is decoded and resized once per (file, target_size,
    color_mode, interpolation) however many iterators read it; a file that
    changes (size or modification time) is read again.  An entry is the
    smaller of the decoded image before resizing (a PIL image, resized again
    on each read: the same pixels, as resizing is deterministic) and the
    read-only array after resizing, before augmentation.  The cache fills up
    to ``max_bytes`` (default 1 GiB; the 1,768 digit photos, 100x100 RGB,
    take 71 MB, where at 224x224 they would take 266 MB) and then keeps what
    it has: with a new random order every epoch, evicting
    would not raise the hit rate.  Set ``image_cache.max_bytes`` to change
    the bound (0 disables caching for everyone), ``clear()`` to free it, or
    pass ``cache=False`` to ``flow_from_directory`` for one iterator.
    """

    def __init__(self, max_bytes=1 << 30):
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._arrays = {}
        self._lock = threading.Lock()

    def __len__(self):
        return len(self._arrays)

    def get(self, key):
        """The array stored under ``key``, or None."""
        return self._arrays.get(key)

    def put(self, key, array):
        """Store ``array`` (a NumPy array, made read-only, or a PIL image) if it
        fits in ``max_bytes``."""
        nbytes = array.nbytes if isinstance(array, np.ndarray) else _pil_nbytes(array)
        with self._lock:
            if key not in self._arrays and self.nbytes + nbytes <= self.max_bytes:
                if isinstance(array, np.ndarray):
                    array.flags.writeable = False
                self._arrays[key] = array
                self.nbytes += nbytes

    def clear(self):
        """Drop every entry."""
        with self._lock:
            self._arrays.clear()
            self.nbytes = 0


image_cache = ImageCache()


# Affine augmentations: Keras's apply_affine_transform, which runs
# scipy.ndimage.affine_transform on each channel, written in NumPy.  The
# coordinate mapping of each fill mode follows SciPy's (including its legacy
# 'wrap', of period size - 1) so that the results are the same.

def _affine_transform(x, theta=0, tx=0, ty=0, shear=0, zx=1, zy=1,
                      fill_mode="nearest", cval=0.0, order=1):
    """Rotate (degrees), shift (pixels), shear (degrees) and zoom an (H, W, C) image."""
    matrices = []
    if theta != 0:
        t = np.deg2rad(theta)
        matrices.append([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    if tx != 0 or ty != 0:
        matrices.append([[1, 0, tx], [0, 1, ty], [0, 0, 1]])
    if shear != 0:
        s = np.deg2rad(shear)
        matrices.append([[1, -np.sin(s), 0], [0, np.cos(s), 0], [0, 0, 1]])
    if zx != 1 or zy != 1:
        matrices.append([[zx, 0, 0], [0, zy, 0], [0, 0, 1]])
    if not matrices:
        return x
    h, w = x.shape[0], x.shape[1]
    o_x, o_y = h / 2 - 0.5, w / 2 - 0.5
    matrix = functools.reduce(np.dot, matrices)
    matrix = np.dot(np.dot([[1, 0, o_x], [0, 1, o_y], [0, 0, 1]], matrix),
                    [[1, 0, -o_x], [0, 1, -o_y], [0, 0, 1]])
    matrix = matrix[[1, 0, 2]][:, [1, 0, 2]]  # Keras's (x, y) -> (row, col) swap
    rows, cols = np.indices((h, w), dtype=np.float64)
    r = matrix[0, 0] * rows + matrix[0, 1] * cols + matrix[0, 2]
    c = matrix[1, 0] * rows + matrix[1, 1] * cols + matrix[1, 2]
    return _sample(x, r, c, fill_mode, cval, order).astype(x.dtype, copy=False)


def _map_coordinate(v, n, fill_mode):
    """SciPy's map_coordinate: fold coordinates outside [0, n - 1] back for the fill mode."""
    if fill_mode == "reflect":
        if n <= 1:
            return np.zeros_like(v)
        p = 2 * n
        below = np.where(v < -p, p * np.trunc(-v / p) + v, v)
        below = np.where(below < -n, below + p, -below - 1)
        above = v - p * np.trunc(v / p)
        above = np.where(above >= n, p - above - 1, above)
        return np.where(v < 0, below, np.where(v > n - 1, above, v))
    if fill_mode == "wrap":
        if n <= 1:
            return np.zeros_like(v)
        p = n - 1
        return np.where(v < 0, v + p * (np.trunc(-v / p) + 1),
                        np.where(v > p, v - p * np.trunc(v / p), v))
    return v


def _index(i, n, fill_mode):
    """Integer indices of interpolation neighbours, extended as SciPy extends the edges."""
    if fill_mode == "reflect":
        i = np.mod(i, 2 * n)
        return np.where(i >= n, 2 * n - 1 - i, i)
    return np.clip(i, 0, n - 1)


def _sample(x, r, c, fill_mode, cval, order):
    """Values of x (H, W, C) at fractional rows r and columns c (order 0: nearest, 1: linear)."""
    if fill_mode not in {"constant", "nearest", "reflect", "wrap"}:
        raise ValueError(f"Invalid fill_mode: {fill_mode}")
    h, w = x.shape[0], x.shape[1]
    outside = (r < 0) | (r > h - 1) | (c < 0) | (c > w - 1)
    r, c = _map_coordinate(r, h, fill_mode), _map_coordinate(c, w, fill_mode)
    if order == 0:
        ri = _index(np.floor(r + 0.5).astype(np.intp), h, fill_mode)
        ci = _index(np.floor(c + 0.5).astype(np.intp), w, fill_mode)
        out = x[ri, ci].astype(np.float64)
    elif order == 1:
        r0, c0 = np.floor(r), np.floor(c)
        fr, fc = (r - r0)[..., np.newaxis], (c - c0)[..., np.newaxis]
        r0, c0 = r0.astype(np.intp), c0.astype(np.intp)
        ra, rb = _index(r0, h, fill_mode), _index(r0 + 1, h, fill_mode)
        ca, cb = _index(c0, w, fill_mode), _index(c0 + 1, w, fill_mode)
        out = ((1 - fr) * ((1 - fc) * x[ra, ca] + fc * x[ra, cb])
               + fr * ((1 - fc) * x[rb, ca] + fc * x[rb, cb]))
    else:
        raise ValueError(f"interpolation_order must be 0 or 1, got {order}")
    if fill_mode == "constant":
        out[outside] = cval
    return out


def _brightness_shift(x, brightness):
    """Scale brightness with PIL's ImageEnhance, keeping values outside [0, 255] in range."""
    x_min, x_max = np.min(x), np.max(x)
    local_scale = x_min < 0 or x_max > 255
    img = ImageEnhance.Brightness(array_to_img(x, scale=local_scale)).enhance(brightness)
    x = img_to_array(img)
    if local_scale:
        x = x / 255 * (x_max - x_min) + x_min
    return x


def _channel_shift(x, intensity):
    """Add ``intensity`` to every channel, clipped to the image's value range."""
    return np.clip(x + intensity, np.min(x), np.max(x))


class ImageDataGenerator:
    """Keras's ImageDataGenerator: real-time augmentation and standardisation of image batches.

    Images are channels last.  Augmentation per image (``random_transform``):
    rotation_range (degrees), width/height_shift_range (fraction of the size
    if < 1, else pixels; or a list of choices), shear_range (degrees),
    zoom_range (float or [lower, upper]), channel_shift_range,
    horizontal/vertical_flip, brightness_range ([lower, upper] factors);
    fill_mode 'nearest', 'constant' (with cval), 'reflect' or 'wrap';
    interpolation_order 0 or 1.  Then ``standardize``: preprocessing_function,
    rescale, sample- and feature-wise centring and normalisation, ZCA
    whitening (feature-wise statistics come from ``fit``).
    validation_split sets aside that fraction for ``subset='validation'``.

    Kept from Keras for identical results: height_shift_range shifts images
    sideways and width_shift_range up and down (keras-team/keras#17398), and
    all random draws come in Keras's order.
    """

    def __init__(self, featurewise_center=False, samplewise_center=False,
                 featurewise_std_normalization=False, samplewise_std_normalization=False,
                 zca_whitening=False, zca_epsilon=1e-6, rotation_range=0,
                 width_shift_range=0.0, height_shift_range=0.0, brightness_range=None,
                 shear_range=0.0, zoom_range=0.0, channel_shift_range=0.0,
                 fill_mode="nearest", cval=0.0, horizontal_flip=False, vertical_flip=False,
                 rescale=None, preprocessing_function=None, validation_split=0.0,
                 interpolation_order=1, dtype="float32"):
        self.featurewise_center = featurewise_center
        self.samplewise_center = samplewise_center
        self.featurewise_std_normalization = featurewise_std_normalization
        self.samplewise_std_normalization = samplewise_std_normalization
        self.zca_whitening = zca_whitening
        self.zca_epsilon = zca_epsilon
        self.rotation_range = rotation_range
        self.width_shift_range = width_shift_range
        self.height_shift_range = height_shift_range
        self.shear_range = shear_range
        self.channel_shift_range = channel_shift_range
        if fill_mode not in {"constant", "nearest", "reflect", "wrap"}:
            raise ValueError(f"Invalid fill_mode: {fill_mode}")
        self.fill_mode = fill_mode
        self.cval = cval
        self.horizontal_flip = horizontal_flip
        self.vertical_flip = vertical_flip
        self.rescale = rescale
        self.preprocessing_function = preprocessing_function
        if interpolation_order not in (0, 1):
            raise ValueError(f"interpolation_order must be 0 or 1, got {interpolation_order}")
        self.interpolation_order = interpolation_order
        self.dtype = dtype
        if validation_split and not 0 < validation_split < 1:
            raise ValueError("`validation_split` must be strictly between 0 and 1. "
                             f" Received: {validation_split}")
        self._validation_split = validation_split
        self.mean = None
        self.std = None
        self.principal_components = None

        if isinstance(zoom_range, (float, int)):
            self.zoom_range = [1 - zoom_range, 1 + zoom_range]
        elif len(zoom_range) == 2 and all(isinstance(v, (float, int)) for v in zoom_range):
            self.zoom_range = [zoom_range[0], zoom_range[1]]
        else:
            raise ValueError("`zoom_range` should be a float or a tuple or list of two floats. "
                             f"Received: {zoom_range}")
        if zca_whitening and not featurewise_center:
            self.featurewise_center = True
            warnings.warn("This ImageDataGenerator specifies `zca_whitening`, which overrides "
                          "setting of `featurewise_center`.")
        if featurewise_std_normalization and not featurewise_center:
            self.featurewise_center = True
            warnings.warn("This ImageDataGenerator specifies `featurewise_std_normalization`, "
                          "which overrides setting of `featurewise_center`.")
        if samplewise_std_normalization and not samplewise_center:
            self.samplewise_center = True
            warnings.warn("This ImageDataGenerator specifies `samplewise_std_normalization`, "
                          "which overrides setting of `samplewise_center`.")
        if brightness_range is not None and (
                not isinstance(brightness_range, (tuple, list)) or len(brightness_range) != 2):
            raise ValueError("`brightness_range should be tuple or list of two floats. "
                             f"Received: {brightness_range}")
        self.brightness_range = brightness_range

    def flow(self, x, y=None, batch_size=32, shuffle=True, sample_weight=None, seed=None,
             save_to_dir=None, save_prefix="", save_format="png", ignore_class_split=False,
             subset=None):
        """Batches of augmented data from arrays: x (N, H, W, C) and optional labels y."""
        return NumpyArrayIterator(
            x, y, self, batch_size=batch_size, shuffle=shuffle, sample_weight=sample_weight,
            seed=seed, save_to_dir=save_to_dir, save_prefix=save_prefix,
            save_format=save_format, ignore_class_split=ignore_class_split, subset=subset)

    def flow_from_directory(self, directory, target_size=(256, 256), color_mode="rgb",
                            classes=None, class_mode="categorical", batch_size=32, shuffle=True,
                            seed=None, save_to_dir=None, save_prefix="", save_format="png",
                            follow_links=False, subset=None, interpolation="nearest",
                            keep_aspect_ratio=False, cache=True):
        """Batches of augmented images from ``directory``, one subfolder per class.

        See ``DirectoryIterator``.
        """
        return DirectoryIterator(
            directory, self, target_size=target_size, color_mode=color_mode, classes=classes,
            class_mode=class_mode, batch_size=batch_size, shuffle=shuffle, seed=seed,
            save_to_dir=save_to_dir, save_prefix=save_prefix, save_format=save_format,
            follow_links=follow_links, subset=subset, interpolation=interpolation,
            keep_aspect_ratio=keep_aspect_ratio, cache=cache)

    def standardize(self, x):
        """Apply preprocessing_function, rescale and the normalisations to one image.

        Like Keras, works in place where it can: pass a copy to keep ``x``.
        """
        if self.preprocessing_function:
            x = self.preprocessing_function(x)
        if self.rescale:
            x *= self.rescale
        if self.samplewise_center:
            x -= np.mean(x, keepdims=True)
        if self.samplewise_std_normalization:
            x /= np.std(x, keepdims=True) + 1e-6
        if self.featurewise_center:
            if self.mean is not None:
                x -= self.mean
            else:
                warnings.warn("This ImageDataGenerator specifies `featurewise_center`, but it "
                              "hasn't been fit on any training data. Fit it first by calling "
                              "`.fit(numpy_data)`.")
        if self.featurewise_std_normalization:
            if self.std is not None:
                x /= self.std + 1e-6
            else:
                warnings.warn("This ImageDataGenerator specifies "
                              "`featurewise_std_normalization`, but it hasn't been fit on any "
                              "training data. Fit it first by calling `.fit(numpy_data)`.")
        if self.zca_whitening:
            if self.principal_components is not None:
                flat_x = np.reshape(x, (-1, np.prod(x.shape[-3:])))
                x = np.reshape(np.dot(flat_x, self.principal_components), x.shape)
            else:
                warnings.warn("This ImageDataGenerator specifies `zca_whitening`, but it hasn't "
                              "been fit on any training data. Fit it first by calling "
                              "`.fit(numpy_data)`.")
        return x

    def get_random_transform(self, img_shape, seed=None):
        """Random augmentation parameters for an image of shape (H, W, C)."""
        rng = np.random if seed is None else np.random.RandomState(seed)
        return self._random_transform_params(img_shape, rng)

    def _random_transform_params(self, img_shape, rng):
        """Draw the parameters from ``rng`` in Keras's order, so seeded runs match Keras's."""
        theta = rng.uniform(-self.rotation_range, self.rotation_range) if self.rotation_range else 0
        tx = _random_shift(self.height_shift_range, img_shape[0], rng)
        ty = _random_shift(self.width_shift_range, img_shape[1], rng)
        shear = rng.uniform(-self.shear_range, self.shear_range) if self.shear_range else 0
        if self.zoom_range[0] == 1 and self.zoom_range[1] == 1:
            zx, zy = 1, 1
        else:
            zx, zy = rng.uniform(self.zoom_range[0], self.zoom_range[1], 2)
        flip_horizontal = (rng.random() < 0.5) * self.horizontal_flip
        flip_vertical = (rng.random() < 0.5) * self.vertical_flip
        channel_shift_intensity = None
        if self.channel_shift_range != 0:
            channel_shift_intensity = rng.uniform(-self.channel_shift_range,
                                                  self.channel_shift_range)
        brightness = None
        if self.brightness_range is not None:
            brightness = rng.uniform(self.brightness_range[0], self.brightness_range[1])
        return {"theta": theta, "tx": tx, "ty": ty, "shear": shear, "zx": zx, "zy": zy,
                "flip_horizontal": flip_horizontal, "flip_vertical": flip_vertical,
                "channel_shift_intensity": channel_shift_intensity, "brightness": brightness}

    def apply_transform(self, x, transform_parameters):
        """Apply augmentation parameters (as from ``get_random_transform``) to one image."""
        p = transform_parameters
        x = _affine_transform(x, p.get("theta", 0), p.get("tx", 0), p.get("ty", 0),
                              p.get("shear", 0), p.get("zx", 1), p.get("zy", 1),
                              fill_mode=self.fill_mode, cval=self.cval,
                              order=self.interpolation_order)
        if p.get("channel_shift_intensity") is not None:
            x = _channel_shift(x, p["channel_shift_intensity"])
        if p.get("flip_horizontal", False):
            x = x[:, ::-1]
        if p.get("flip_vertical", False):
            x = x[::-1]
        if p.get("brightness") is not None:
            x = _brightness_shift(x, p["brightness"])
        return x

    def random_transform(self, x, seed=None):
        """A randomly augmented copy of one image (H, W, C)."""
        return self.apply_transform(x, self.get_random_transform(x.shape, seed))

    def fit(self, x, augment=False, rounds=1, seed=None):
        """Compute the feature-wise statistics (mean, std, ZCA) from images x (N, H, W, C)."""
        x = np.array(x, dtype=self.dtype)
        if x.ndim != 4:
            raise ValueError(f"Input to `.fit()` should have rank 4. Got array with shape: "
                             f"{x.shape}")
        rng = np.random if seed is None else np.random.RandomState(seed)
        if self.rescale:
            x *= self.rescale
        if augment:
            x = np.stack([self.apply_transform(img, self._random_transform_params(img.shape, rng))
                          for _ in range(rounds) for img in x]).astype(self.dtype, copy=False)
        if self.featurewise_center:
            self.mean = np.mean(x, axis=(0, 1, 2)).reshape(1, 1, -1)
            x -= self.mean
        if self.featurewise_std_normalization:
            self.std = np.std(x, axis=(0, 1, 2)).reshape(1, 1, -1)
            x /= self.std + 1e-6
        if self.zca_whitening:
            n = len(x)
            u, s, _ = np.linalg.svd(x.reshape(n, -1).T, full_matrices=False)
            s_inv = np.sqrt(n) / (s + self.zca_epsilon)
            self.principal_components = (u * s_inv).dot(u.T)


def _random_shift(shift_range, size, rng):
    """Keras's shift draw: a float range is uniform, an int or list is a choice of pixels."""
    if not shift_range:
        return 0
    try:  # 1-D array-like or int
        shift = rng.choice(shift_range)
        shift *= rng.choice([-1, 1])
    except ValueError:  # floating point
        shift = rng.uniform(-shift_range, shift_range)
    if np.max(shift_range) < 1:
        shift *= size
    return shift


class Iterator:
    """Keras's image iterator: a sequence of batches (``len``, ``[i]``,
    ``on_epoch_end``) that is also an endless iterator (``next``).

    With a seed, the random state used for batch k (shuffling and
    augmentation) is ``RandomState(seed + k)``, k counting every batch
    produced so far, as in Keras; without one it is NumPy's global state.
    Shuffling happens at the start of each pass (``next``) or in
    ``on_epoch_end`` (indexing), so every sample appears once per epoch.
    """

    white_list_formats = ("png", "jpg", "jpeg", "bmp", "ppm", "tif", "tiff")

    def __init__(self, n, batch_size, shuffle, seed):
        self.n = n
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.batch_index = 0
        self.total_batches_seen = 0
        self.lock = threading.Lock()
        self.index_array = None
        self._rng = np.random
        self.index_generator = self._flow_index()

    def _next_rng(self):
        """The random state of the next batch (Keras re-seeds before every batch)."""
        if self.seed is not None:
            self._rng = np.random.RandomState(self.seed + self.total_batches_seen)
        self.total_batches_seen += 1
        return self._rng

    def _set_index_array(self):
        self.index_array = self._rng.permutation(self.n) if self.shuffle else np.arange(self.n)

    def __getitem__(self, idx):
        return self._get_batches_of_transformed_samples(*self._batch_indices(idx))

    def _batch_indices(self, idx):
        """(sample indices, random state) of batch ``idx``; advances the iterator."""
        if idx < 0:
            idx += len(self)
        if not 0 <= idx < len(self):
            raise ValueError(f"Asked to retrieve element {idx}, but the Sequence has length "
                             f"{len(self)}")
        with self.lock:
            rng = self._next_rng()
            if self.index_array is None:
                self._set_index_array()
            return self.index_array[self.batch_size * idx:self.batch_size * (idx + 1)], rng

    def __len__(self):
        return (self.n + self.batch_size - 1) // self.batch_size

    def on_epoch_end(self):
        """Reshuffle for the next epoch of indexed access."""
        self._set_index_array()

    def reset(self):
        """Make ``next`` start a new (reshuffled) pass."""
        self.batch_index = 0

    def _flow_index(self):
        self.reset()
        while True:
            rng = self._next_rng()
            if self.batch_index == 0:
                self._set_index_array()
            current_index = (self.batch_index * self.batch_size) % self.n if self.n else 0
            if self.n > current_index + self.batch_size:
                self.batch_index += 1
            else:
                self.batch_index = 0
            yield self.index_array[current_index:current_index + self.batch_size], rng

    def __iter__(self):
        return self

    def __next__(self):
        return self.next()

    def next(self):
        """The next batch; a pass ends with a partial batch, then a reshuffled pass begins."""
        with self.lock:
            index_array, rng = next(self.index_generator)
        return self._get_batches_of_transformed_samples(index_array, rng)

    def _get_batches_of_transformed_samples(self, index_array, rng):
        """The batch of samples ``index_array``, augmented with draws from ``rng``."""
        raise NotImplementedError

    def _transformed(self, x, rng):
        """One image as float, randomly augmented, then standardised."""
        gen = self.image_data_generator
        x = x.astype(self.dtype)
        if gen:
            x = gen.apply_transform(x, gen._random_transform_params(x.shape, rng))
            x = gen.standardize(x)
        return x

    def _save_batch(self, batch_x, index_array, rng):
        """Write augmented images to save_to_dir (for inspection), named as Keras names them."""
        for x, j in zip(batch_x, index_array):
            fname = f"{self.save_prefix}_{j}_{rng.randint(1e7)}.{self.save_format}"
            array_to_img(x, scale=True).save(os.path.join(self.save_to_dir, fname))


class NumpyArrayIterator(Iterator):
    """Batches (x, y[, sample_weight]) of augmented images from arrays; x alone if y is None."""

    def __init__(self, x, y, image_data_generator, batch_size=32, shuffle=False,
                 sample_weight=None, seed=None, save_to_dir=None, save_prefix="",
                 save_format="png", subset=None, ignore_class_split=False):
        if y is not None and len(x) != len(y):
            raise ValueError("`x` (images tensor) and `y` (labels) should have the same length. "
                             f"Found: x.shape = {np.shape(x)}, y.shape = {np.shape(y)}")
        if sample_weight is not None and len(x) != len(sample_weight):
            raise ValueError("`x` (images tensor) and `sample_weight` should have the same "
                             f"length. Found: x.shape = {np.shape(x)}, "
                             f"sample_weight.shape = {np.shape(sample_weight)}")
        if subset is not None:
            if subset not in {"training", "validation"}:
                raise ValueError(f"Invalid subset name: {subset}; expected 'training' or "
                                 "'validation'.")
            split_idx = int(len(x) * image_data_generator._validation_split)
            if y is not None and not ignore_class_split and not np.array_equal(
                    np.unique(y[:split_idx]), np.unique(y[split_idx:])):
                raise ValueError("Training and validation subsets have different number of "
                                 "classes after the split. If your numpy arrays are sorted by "
                                 "the label, you might want to shuffle them.")
            part = slice(None, split_idx) if subset == "validation" else slice(split_idx, None)
            x = x[part]
            y = None if y is None else y[part]
            sample_weight = None if sample_weight is None else sample_weight[part]
        self.dtype = image_data_generator.dtype
        self.x = np.asarray(x, dtype=self.dtype)
        if self.x.ndim != 4:
            raise ValueError("Input data in `NumpyArrayIterator` should have rank 4. You passed "
                             f"an array with shape {self.x.shape}")
        if self.x.shape[3] not in {1, 3, 4}:
            warnings.warn(f"NumpyArrayIterator expects images with 1, 3 or 4 channels on axis 3 "
                          f"(channels last); got shape {self.x.shape}.")
        self.y = None if y is None else np.asarray(y)
        self.sample_weight = None if sample_weight is None else np.asarray(sample_weight)
        self.image_data_generator = image_data_generator
        self.save_to_dir = save_to_dir
        self.save_prefix = save_prefix
        self.save_format = save_format
        super().__init__(self.x.shape[0], batch_size, shuffle, seed)

    def _get_batches_of_transformed_samples(self, index_array, rng):
        batch_x = np.zeros((len(index_array),) + self.x.shape[1:], dtype=self.dtype)
        for i, j in enumerate(index_array):
            batch_x[i] = self._transformed(self.x[j], rng)
        if self.save_to_dir:
            self._save_batch(batch_x, index_array, rng)
        if self.y is None:
            return batch_x
        if self.sample_weight is None:
            return batch_x, self.y[index_array]
        return batch_x, self.y[index_array], self.sample_weight[index_array]


def _identify(path):
    """None if Pillow recognises ``path`` as an image (header only), else the reason."""
    try:
        with Image.open(path):
            return None
    except (OSError, Image.DecompressionBombError) as e:
        return str(e) or type(e).__name__


def _list_valid_filenames_in_directory(directory, white_list_formats, split, follow_links):
    """Image files under one class folder, in Keras's order, as paths relative to its parent.

    Files with an image extension that Pillow cannot identify are left out
    and returned apart, with the reason.
    """
    extensions = tuple("." + ext for ext in white_list_formats)
    files = []
    for root, _, names in sorted(os.walk(directory, followlinks=follow_links),
                                 key=lambda walk: walk[0]):
        files += [os.path.join(root, name) for name in sorted(names)
                  if name.lower().endswith(extensions)]
    if split:
        files = files[int(split[0] * len(files)):int(split[1] * len(files))]
    valid, invalid = [], []
    for path in files:
        reason = _identify(path)
        if reason is None:
            valid.append(os.path.join(os.path.basename(directory),
                                      os.path.relpath(path, directory)))
        else:
            invalid.append((path, reason))
    return valid, invalid


def list_class_files(directory, classes=None, white_list_formats=Iterator.white_list_formats,
                     split=None, follow_links=False):
    """Class names and each class's image files (relative to ``directory``), as Keras lists them.

    classes: the class subfolders, in label order (default: every subfolder,
    sorted).  split: (start, stop) fractions of each class's files to keep.
    Files Pillow cannot identify are skipped with a warning naming them.
    """
    if not classes:
        classes = [d for d in sorted(os.listdir(directory))
                   if os.path.isdir(os.path.join(directory, d))]
    with ThreadPool() as pool:
        listed = pool.starmap(_list_valid_filenames_in_directory,
                              [(os.path.join(directory, c), white_list_formats, split,
                                follow_links) for c in classes])
    for _, invalid in listed:
        for path, reason in invalid:
            warnings.warn(f"Skipping {path}: not a readable image ({reason})")
    return list(classes), [valid for valid, _ in listed]


class DirectoryIterator(Iterator):
    """Batches of images read from a folder with one subfolder per class (Keras's iterator).

    Attributes as in Keras: ``class_indices`` (name -> label), ``classes``
    (label of each sample), ``filenames`` (relative to ``directory``),
    ``filepaths``, ``samples``, ``num_classes``.  Files are listed per class
    (sorted subfolders, then recursively by sorted path).  A batch is
    (images, labels) with labels one-hot for class_mode 'categorical', the
    label as a float for 'sparse' and 'binary', the images for 'input', and
    images alone for None.

    cache: keep decoded images in ``image_cache`` (see ``ImageCache``), so that
    every file is decoded and resized once per process.
    """

    allowed_class_modes = {"categorical", "binary", "sparse", "input", None}

    def __init__(self, directory, image_data_generator, target_size=(256, 256),
                 color_mode="rgb", classes=None, class_mode="categorical", batch_size=32,
                 shuffle=True, seed=None, save_to_dir=None, save_prefix="", save_format="png",
                 follow_links=False, subset=None, interpolation="nearest",
                 keep_aspect_ratio=False, cache=True):
        if color_mode not in _CHANNELS:
            raise ValueError(f"Invalid color mode: {color_mode}; expected 'rgb', 'rgba', or "
                             "'grayscale'.")
        if class_mode not in self.allowed_class_modes:
            raise ValueError(f"Invalid class_mode: {class_mode}; expected one of: "
                             f"{self.allowed_class_modes}")
        if interpolation not in _PIL_INTERPOLATION_METHODS:
            raise ValueError(f"Invalid interpolation method {interpolation}")
        self.directory = directory
        self.image_data_generator = image_data_generator
        self.target_size = tuple(target_size)
        self.color_mode = color_mode
        self.image_shape = self.target_size + (_CHANNELS[color_mode],)
        self.class_mode = class_mode
        self.interpolation = interpolation
        self.keep_aspect_ratio = bool(keep_aspect_ratio)
        self.dtype = image_data_generator.dtype if image_data_generator else "float32"
        self.save_to_dir = save_to_dir
        self.save_prefix = save_prefix
        self.save_format = save_format
        self.subset = subset
        if subset is None:
            self.split = None
        elif subset == "validation":
            self.split = (0, image_data_generator._validation_split)
        elif subset == "training":
            self.split = (image_data_generator._validation_split, 1)
        else:
            raise ValueError(f"Invalid subset name: {subset};expected 'training' or "
                             "'validation'")
        self.cache = image_cache if cache else None

        class_names, files = list_class_files(directory, classes, self.white_list_formats,
                                              self.split, follow_links)
        self.num_classes = len(class_names)
        self.class_indices = dict(zip(class_names, range(len(class_names))))
        self.filenames = [f for class_files in files for f in class_files]
        self.classes = np.repeat(np.arange(len(files), dtype="int32"),
                                 [len(class_files) for class_files in files])
        self.samples = len(self.filenames)
        self.filepaths = [os.path.join(directory, f) for f in self.filenames]
        print(f"Found {self.samples} images belonging to {self.num_classes} classes.")
        super().__init__(self.samples, batch_size, shuffle, seed)

    @property
    def labels(self):
        """The label of each sample (``classes``)."""
        return self.classes

    def _load(self, j):
        """Sample j decoded and resized, as a read-only (H, W, C) array of its own dtype."""
        path = self.filepaths[j]
        key = None
        if self.cache is not None:
            st = os.stat(path)
            key = (os.path.abspath(path), st.st_mtime_ns, st.st_size, self.target_size,
                   self.color_mode, self.interpolation, self.keep_aspect_ratio)
            x = self.cache.get(key)
            if isinstance(x, Image.Image):   # stored before resizing
                x = np.asarray(_resize(x, self.target_size, self.interpolation,
                                       self.keep_aspect_ratio))
                return x.reshape(x.shape[:2] + (-1,))
            if x is not None:
                return x
        try:
            decoded = load_img(path, color_mode=self.color_mode)
            img = _resize(decoded, self.target_size, self.interpolation, self.keep_aspect_ratio)
        except OSError as e:
            raise OSError(f"Cannot read image {path}: {e}") from e
        x = np.asarray(img)
        x = x.reshape(x.shape[:2] + (-1,))
        if key is not None:
            # keep the smaller: small photos before resizing, large ones after
            self.cache.put(key, decoded if _pil_nbytes(decoded) < x.nbytes else x)
        return x

    def _get_batches_of_transformed_samples(self, index_array, rng):
        batch_x = np.zeros((len(index_array),) + self.image_shape, dtype=self.dtype)
        for i, j in enumerate(index_array):
            batch_x[i] = self._transformed(self._load(j), rng)
        if self.save_to_dir:
            self._save_batch(batch_x, index_array, rng)
        if self.class_mode == "input":
            return batch_x, batch_x.copy()
        if self.class_mode is None:
            return batch_x
        return batch_x, self._labels(index_array)

    def _labels(self, index_array):
        """The targets of samples ``index_array`` (class modes with labels)."""
        labels = self.classes[index_array]
        if self.class_mode in {"binary", "sparse"}:
            return labels.astype(self.dtype)
        batch_y = np.zeros((len(index_array), self.num_classes), dtype=self.dtype)
        batch_y[np.arange(len(index_array)), labels] = 1.0
        return batch_y

    def _batch_targets(self, idx):
        """Batch ``idx``'s targets without reading its images, for a caller that
        has their inputs already (fit's frozen-trunk cache): the iterator
        advances as ``self[idx]`` would.  None where targets are the images."""
        if self.class_mode not in {"binary", "sparse", "categorical"} or self.save_to_dir:
            return None
        index_array, rng = self._batch_indices(idx)
        gen = self.image_data_generator
        if gen:   # the same draws as loading (flips draw even when off, as in Keras)
            for _ in index_array:
                gen._random_transform_params(self.image_shape, rng)
        return self._labels(index_array)
