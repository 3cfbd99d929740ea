"""Loading and converting images (Keras's ``load_img``, ``img_to_array``,
``array_to_img``, ``save_img``), and the process-wide decoded-image cache
that ``flow_from_directory`` uses."""
import io
import os
import threading
import warnings

import numpy as np
from PIL import Image


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


# What Pillow's decoders raise on malformed data: OSError and ValueError by their
# documentation, in practice nearly anything (tools/fuzz/fuzz_image.py found SyntaxError
# from a PNG with a broken chunk after the first IDAT, TypeError from a TIFF whose strip
# offset is a RATIONAL).  So every Exception but MemoryError while decoding untrusted
# bytes means "not a readable image": the rule of load_img and serving's decode_image.


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
    except MemoryError:
        raise
    except Exception as e:          # see the note above load_img
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
