"""Utilities, as ``keras.utils``: ``Progbar``, ``to_categorical``, and ``split_dataset`` for
the tutorial's split."""
import numpy as np

from ..backend import set_random_seed
from .dataset import split_dataset
from .progbar import Progbar

__all__ = ["Progbar", "set_random_seed", "split_dataset", "to_categorical"]


def to_categorical(y, num_classes=None, dtype="float32"):
    """Keras's ``to_categorical``: integer class labels -> one-hot rows (a trailing axis
    of size 1 is dropped first, as Keras does)."""
    y = np.asarray(y)
    if y.size and not np.all(np.equal(np.mod(y, 1), 0)):
        raise ValueError("to_categorical takes integer class labels")
    y = y.astype(np.int64)
    if y.ndim > 1 and y.shape[-1] == 1:
        y = y.reshape(y.shape[:-1])
    if num_classes is None:
        num_classes = int(y.max()) + 1 if y.size else 0
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}); got values from {y.min()} "
                         f"to {y.max()}")
    out = np.zeros(y.shape + (int(num_classes),), dtype=dtype)
    np.put_along_axis(out, y[..., None], 1, axis=-1)
    return out
