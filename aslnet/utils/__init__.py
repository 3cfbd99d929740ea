"""Utilities, as ``keras.utils``: ``to_categorical``, ``load_img``, ``img_to_array``,
``array_to_img``, ``save_img``, ``image_dataset_from_directory``, ``set_random_seed``,
``Progbar``, ``get_source_inputs``; and ``split_dataset`` for the tutorial's split."""
import numpy as np

from ..backend import set_random_seed
from ..preprocessing.image import array_to_img, img_to_array, load_img, save_img
from .dataset import split_dataset
from .image_dataset import image_dataset_from_directory
from .progbar import Progbar

__all__ = ["Progbar", "array_to_img", "get_source_inputs", "image_dataset_from_directory",
           "img_to_array",
           "load_img", "save_img", "set_random_seed", "split_dataset", "to_categorical"]


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


def get_source_inputs(tensor):
    """Keras's ``get_source_inputs``: the list of Input tensors ``tensor`` is
    computed from (``[tensor]`` for an Input itself)."""
    seen, stack, found = set(), [tensor], []
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        inputs = getattr(t, "_inputs", None)
        if inputs is None:
            raise ValueError(f"get_source_inputs takes a Keras tensor, got {type(t).__name__}")
        if not inputs:
            found.append(t)
        stack.extend(reversed(inputs))
    return found
