"""The random affine and colour transforms of ``ImageDataGenerator``, in
NumPy (the results of ``scipy.ndimage.affine_transform``)."""
import functools

import numpy as np
from PIL import ImageEnhance

from .image_utils import array_to_img, img_to_array


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
