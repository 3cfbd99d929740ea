"""Batching for fit/evaluate/predict: NumPy arrays, Keras-style Sequences
(anything with ``__len__`` and ``__getitem__`` returning batches, such as
``DirectoryIterator``) and plain iterators/generators."""
import math

import numpy as np

from .. import backend


def _is_array(x):
    return isinstance(x, (np.ndarray, list))


def _is_sequence(x):
    return hasattr(x, "__getitem__") and hasattr(x, "__len__") and not _is_array(x)


def num_steps(x, batch_size, steps):
    """Batches per epoch: ``steps`` if given, else from the data's length."""
    if steps is not None:
        steps = int(steps)
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        return steps
    if x is None:
        raise ValueError("No data given (x is None)")
    if _is_array(x):
        n = len(x)
        if n == 0:
            raise ValueError("Empty input: x has no samples")
        return math.ceil(n / (batch_size or 32))
    if _is_sequence(x):
        if batch_size is not None:
            raise ValueError("Do not pass batch_size with a generator/Sequence: "
                             "it makes its own batches")
        n = len(x)
        if n == 0:
            raise ValueError("The data iterator is empty (no batches)")
        return n
    raise ValueError("steps (steps_per_epoch) is required for a plain iterator or generator")


def _split(item, with_targets):
    if isinstance(item, tuple):
        if len(item) not in (1, 2, 3):
            raise ValueError("A batch must be x, (x,), (x, y) or (x, y, sample_weight)")
        if len(item) == 3 and item[2] is not None:
            raise NotImplementedError("sample_weight is not supported yet")
        return item[0], (item[1] if len(item) > 1 else None)
    return item, None


def batches(x, y, batch_size, shuffle, steps, with_targets=True, cached=None):
    """Yield (x_batch, y_batch, ids) for one epoch of ``steps`` batches.
    ``ids`` are the samples' indices in the data set when the source tells
    them (arrays; Keras-style image iterators), else None.  ``cached``: an
    object whose ``has(ids)`` tells that the caller holds what it needs of
    those samples' inputs: x_batch is then None and not read at all."""
    def skip(ids):
        return cached is not None and ids is not None and cached.has(ids)

    if _is_array(x):
        x = np.asarray(x)
        if with_targets:
            if y is None:
                raise ValueError("Targets y are required with array inputs")
            y = np.asarray(y)
            if len(y) != len(x):
                raise ValueError(f"x and y have different lengths: {len(x)} vs {len(y)}")
        bs = batch_size or 32
        order = backend.rng().permutation(len(x)) if shuffle else np.arange(len(x))
        for s in range(steps):
            idx = order[s * bs:(s + 1) * bs]
            if len(idx) == 0:
                return
            ids = idx
            if not shuffle:
                idx = slice(s * bs, s * bs + len(idx))
            yield (None if skip(ids) else x[idx]), (y[idx] if with_targets else None), ids
        return
    if y is not None:
        raise ValueError("y must be None when x is a generator/Sequence (it yields (x, y))")
    if _is_sequence(x):
        for s in range(steps):
            k = s % len(x)
            ids = _sequence_ids(x, k)
            if with_targets and skip(ids) and hasattr(x, "_batch_targets"):
                yb = x._batch_targets(k)
                if yb is not None:
                    yield None, yb, ids
                    continue
            xb, yb = _split(x[k], with_targets)
            if with_targets and yb is None:
                raise ValueError("The data yields no targets; expected (x, y) batches")
            yield xb, yb, _sequence_ids(x, k, len(xb))
        if hasattr(x, "on_epoch_end"):
            x.on_epoch_end()
        return
    it = iter(x)
    for _ in range(steps):
        try:
            item = next(it)
        except StopIteration:
            return
        xb, yb = _split(item, with_targets)
        if with_targets and yb is None:
            raise ValueError("The data yields no targets; expected (x, y) batches")
        yield xb, yb, None


def _sequence_ids(seq, k, n=None):
    """Indices of batch k's samples in a Keras image iterator (index_array),
    or None for other Sequences (or a batch of other than ``n`` samples)."""
    index_array = getattr(seq, "index_array", None)
    bs = getattr(seq, "batch_size", None)
    if index_array is None or bs is None:
        return None
    ids = np.asarray(index_array[k * bs:k * bs + bs])
    return ids if n is None or len(ids) == n else None


def has_augmentation(data):
    """Whether batches of ``data`` are randomly augmented (a Keras image
    iterator whose ImageDataGenerator has random transforms)."""
    gen = getattr(data, "image_data_generator", None)
    if gen is None:
        return False
    zoom = getattr(gen, "zoom_range", (1, 1))
    return bool(getattr(gen, "rotation_range", 0) or getattr(gen, "width_shift_range", 0)
                or getattr(gen, "height_shift_range", 0) or getattr(gen, "shear_range", 0)
                or getattr(gen, "channel_shift_range", 0)
                or getattr(gen, "horizontal_flip", False) or getattr(gen, "vertical_flip", False)
                or getattr(gen, "brightness_range", None) is not None
                or tuple(zoom) != (1, 1))


def num_samples(data):
    """Samples in the data set (for sizing a per-sample cache), or None."""
    if _is_array(data):
        return len(data)
    n = getattr(data, "n", None)
    return int(n) if isinstance(n, (int, np.integer)) else None
