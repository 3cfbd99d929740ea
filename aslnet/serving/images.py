"""Image bytes -> the model's input array, with bounded memory and the photo
formats only.  Used by the web app and by ``aslnet predict`` / ``classify``.

The steps are the tutorial's ``load_img`` -> ``img_to_array`` (colour mode, then
nearest-neighbour resize to the model's input), with three differences, all
on purpose:

* only the formats a photo arrives in are decoded (``PHOTO_FORMATS``, through
  Pillow's ``formats=``); others raise ``UnsupportedImageFormat`` (HTTP 415),
  so no request makes Pillow run Ghostscript (EPS) or parse rare formats;
* the EXIF orientation is applied (a phone photo taken upright is classified
  upright).  Keras's ``load_img`` ignores it: a model trained on Keras-loaded
  sideways photos sees them the other way here;
* 16- and 32-bit images are scaled to 8 bits (65535 -> 255, what
  ``preprocess_input`` expects) instead of clipped.

Memory: the header is checked first (``MAX_IMAGE_PIXELS``), then the image is
decoded in its own pixel format (1 to 4 bytes a pixel: at most 200 MB at the
limit) and resized *before* any conversion, so no full-size float or RGB copy
is ever made.  Nearest-neighbour sampling picks source pixels and the colour
conversions act pixel by pixel, so resize-then-convert equals load_img's
convert-then-resize exactly.
"""
import io

import numpy as np

__all__ = ["decode_image", "ImageError", "ImageTooLarge", "UnsupportedImageFormat",
           "PHOTO_FORMATS", "MAX_IMAGE_PIXELS", "COLOR_MODES"]

MAX_IMAGE_PIXELS = 50_000_000        # a 50-megapixel photo
PHOTO_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF")   # MPO: phone JPEGs
COLOR_MODES = {1: "grayscale", 3: "rgb", 4: "rgba"}      # input channels -> load_img mode
_PIL_MODES = {"grayscale": "L", "rgb": "RGB", "rgba": "RGBA"}
_HIGH_BIT_DEPTH = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_ORIENTATION = 0x0112


class ImageError(ValueError):
    """An upload that is not a readable image (HTTP 400)."""
    status = 400


class ImageTooLarge(ImageError):
    """More than MAX_IMAGE_PIXELS pixels, told by the header (HTTP 413)."""
    status = 413


class UnsupportedImageFormat(ImageError):
    """An image in a format that is not a photo format (HTTP 415)."""
    status = 415


def _open(data):
    from PIL import Image, UnidentifiedImageError
    Image.init()                                    # registers every plugin (MPO too)
    try:
        return Image.open(io.BytesIO(data), formats=[f for f in PHOTO_FORMATS
                                                     if f in Image.OPEN])
    except Image.DecompressionBombError as e:       # Pillow's own limit, far above ours
        raise ImageTooLarge(f"image too large ({e})") from e
    except UnidentifiedImageError:
        pass
    except Exception as e:                          # a broken header of a known format
        raise ImageError(f"not a readable image ({type(e).__name__})") from e
    try:                                            # name the format: header only
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format
    except Exception:
        fmt = None
    if fmt:
        raise UnsupportedImageFormat(
            f"unsupported image format {fmt}: send {', '.join(f for f in PHOTO_FORMATS if f != 'MPO')}")
    raise ImageError("not an image file Pillow can read: send a JPEG, PNG, WebP, GIF, BMP "
                     "or TIFF file")


def _eight_bit(img):
    """An 'L' image of a 16/32-bit integer or float one (already small)."""
    from PIL import Image
    if img.mode == "F":
        a = np.asarray(img, np.float32)             # taken as 0..255, as Pillow's convert
    else:
        a = np.asarray(img, np.float32) / 257.0     # 65535 -> 255
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")


def decode_image(data, target_size, color_mode="rgb", interpolation="nearest"):
    """The float32 array (height, width, channels) of the image file ``data``
    (bytes), resized to ``target_size`` (height, width) as ``load_img`` would
    (see the module's notes).  Raises ImageTooLarge, UnsupportedImageFormat or
    ImageError (all ValueErrors) with a message naming the problem."""
    from PIL import Image
    from ..preprocessing.image_utils import _PIL_INTERPOLATION_METHODS
    if not data:
        raise ImageError("empty image")
    if color_mode not in _PIL_MODES:
        raise ValueError('color_mode must be "grayscale", "rgb", or "rgba"')
    img = _open(data)
    with img:
        w, h = img.size
        if w * h > MAX_IMAGE_PIXELS:
            raise ImageTooLarge(f"image too large: {w}x{h} pixels (limit: "
                                f"{MAX_IMAGE_PIXELS:,} pixels)")
        try:
            orientation = int(img.getexif().get(_ORIENTATION, 1))
        except Exception:                           # a broken EXIF block: no rotation
            orientation = 1
        height, width = target_size
        if orientation in (5, 6, 7, 8):             # rotated a quarter turn: swap
            height, width = width, height
        resample = _PIL_INTERPOLATION_METHODS[interpolation]
        mode = _PIL_MODES[color_mode]
        try:
            if interpolation == "nearest" or img.mode in _HIGH_BIT_DEPTH:
                # sample first, then convert: equal to load_img's order (see above)
                small = img if img.size == (width, height) else img.resize((width, height),
                                                                              resample)
                if small.mode in _HIGH_BIT_DEPTH:
                    small = _eight_bit(small)
                small = small if small.mode == mode else small.convert(mode)
            else:                                   # smooth filters: convert first
                small = img if img.mode == mode else img.convert(mode)
                if small.size != (width, height):
                    small = small.resize((width, height), resample)
            small.load()
        except Image.DecompressionBombError as e:
            raise ImageTooLarge(f"image too large ({e})") from e
        except MemoryError:
            raise
        except Exception as e:      # Pillow raises many kinds: image_utils's note
            raise ImageError(f"not a readable image ({type(e).__name__}: truncated or "
                             "corrupt)") from e
    if orientation != 1:
        transpose = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                     4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                     6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
                     8: Image.Transpose.ROTATE_90}.get(orientation)
        if transpose is not None:
            small = small.transpose(transpose)
    x = np.asarray(small, np.float32)
    return x[:, :, None] if x.ndim == 2 else x
