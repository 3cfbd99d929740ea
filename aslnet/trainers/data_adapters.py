"""Batching for fit/evaluate/predict: NumPy arrays, Keras-style Sequences
(anything with ``__len__`` and ``__getitem__`` returning batches, such as
``DirectoryIterator``) and plain iterators/generators."""
import math

import numpy as np

from .. import backend
from ..utils.dataset_ops import Deferred


def _is_array(x):
    """NumPy arrays, lists, and array-likes (TensorFlow/PyTorch tensors,
    pandas objects): anything NumPy converts through ``__array__``."""
    return isinstance(x, (np.ndarray, list)) or (hasattr(x, "__array__")
                                                 and not hasattr(x, "__next__"))


def _is_sequence(x):
    return hasattr(x, "__getitem__") and hasattr(x, "__len__") and not _is_array(x)


def class_names(x):
    """The class names of labelled image data, in label order: a directory
    iterator's ``class_indices`` (name -> label), or a dataset's
    ``class_names`` (tf.keras's image_dataset_from_directory); else None."""
    indices = getattr(x, "class_indices", None)
    if isinstance(indices, dict) and indices:
        return [str(n) for n, _ in sorted(indices.items(), key=lambda kv: kv[1])]
    names = getattr(x, "class_names", None)
    if isinstance(names, (list, tuple)) and names and not _is_array(x):
        return [str(n) for n in names]
    return None


def check_batch_size(batch_size):
    if batch_size is not None and (isinstance(batch_size, bool)
                                   or not isinstance(batch_size, (int, np.integer))
                                   or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def num_steps(x, batch_size, steps):
    """Batches per epoch: ``steps`` if given, else the batches in one pass
    over the data, or None when the data does not tell (a generator: it runs
    until it is exhausted)."""
    check_batch_size(batch_size)
    if steps is not None:
        if isinstance(steps, bool) or int(steps) != steps or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        return int(steps)
    if x is None:
        raise ValueError("No data given (x is None)")
    if _is_array(x):
        n = len(x)
        if n == 0:
            raise ValueError("Empty input: x has no samples")
        return math.ceil(n / (batch_size or 32))
    if batch_size is not None:
        raise ValueError("Do not pass batch_size with a generator/Sequence/dataset: "
                         "it makes its own batches")
    if _is_sequence(x):
        n = len(x)
        if n == 0:
            raise ValueError("The data iterator is empty (no batches)")
        return n
    if not hasattr(x, "__iter__") and not hasattr(x, "__next__"):
        raise TypeError(f"Unsupported data {type(x).__name__}: pass NumPy arrays, a "
                        "Sequence of batches (e.g. flow_from_directory), or an iterable "
                        "of (x, y) batches")
    try:
        n = len(x)                   # e.g. a finite tf.data.Dataset
    except TypeError:
        return None
    return int(n) if n > 0 else None


def _split(item, with_targets):
    """(x, y, sample_weight) of a batch: x, (x,), (x, y) or (x, y, sample_weight),
    as a tuple or a list (Keras)."""
    if isinstance(item, (tuple, list)):
        if len(item) not in (1, 2, 3):
            raise ValueError("A batch must be x, (x,), (x, y) or (x, y, sample_weight)")
        return item[0], (item[1] if len(item) > 1 else None), \
            (item[2] if len(item) > 2 else None)
    return item, None, None


class DataStream:
    """The batches of ``x`` (and ``y``, ``sample_weight``), epoch after epoch,
    as (x_batch, y_batch, ids, sample_weight_batch or None).  ``ids`` are
    the samples' indices in the data
    set when the source tells them (arrays; Keras-style image iterators),
    else None.  ``cached``: an object whose ``has(ids)`` tells that the
    caller holds what it needs of those samples' inputs: x_batch is then
    None and not read at all.  ``part(n)``: the rows [lo, hi) of a batch of n
    the caller uses (a data-parallel rank's slice): image iterators and
    ``image_dataset_from_directory`` then decode only those (the other rows
    of x_batch are zeros).

    Passes over re-iterable data (arrays, Sequences, datasets) follow one
    another (arrays reshuffled, a Sequence's ``on_epoch_end`` called at the
    end of each pass), so an epoch of ``steps_per_epoch`` batches goes on
    where the previous one stopped, as in Keras; a generator is one pass."""

    def __init__(self, x, y, batch_size, shuffle, with_targets=True, cached=None,
                 sample_weight=None, part=None):
        self.with_targets, self.shuffle, self.cached = with_targets, shuffle, cached
        self.part = part
        self.num_batches = num_steps(x, batch_size, None)
        if _is_array(x):
            x = np.asarray(x)
            if with_targets:
                if y is None:
                    raise ValueError("Targets y are required with array inputs")
                y = np.asarray(y)
                if len(y) != len(x):
                    raise ValueError(f"x and y have different lengths: {len(x)} vs {len(y)}")
            if sample_weight is not None:
                sample_weight = np.asarray(sample_weight, np.float32).reshape(-1)
                if len(sample_weight) != len(x):
                    raise ValueError(f"sample_weight has {len(sample_weight)} values for "
                                     f"{len(x)} samples")
            self.kind = "array"
        elif sample_weight is not None:
            raise ValueError("sample_weight must be None when x is a generator/Sequence/"
                             "dataset (it yields (x, y, sample_weight))")
        elif y is not None:
            raise ValueError("y must be None when x is a generator/Sequence/dataset "
                             "(it yields (x, y) batches)")
        elif _is_sequence(x):
            self.kind = "sequence"
        else:
            self.kind = "iterable"
            self.one_shot = iter(x) is x if hasattr(x, "__iter__") else True
        self.x, self.y, self.batch_size = x, y, batch_size or 32
        self.sample_weight = sample_weight
        self._pass = None          # generator of the current pass
        self._pos = 0              # batches taken from it
        self.exhausted = False     # a one-shot iterator ran out

    def _skip(self, ids):
        return self.cached is not None and ids is not None and self.cached.has(ids)

    def _new_pass(self):
        x, y, bs, wt = self.x, self.y, self.batch_size, self.with_targets
        if self.kind == "array":
            order = backend.rng().permutation(len(x)) if self.shuffle else np.arange(len(x))
            for s in range(0, len(x), bs):
                ids = order[s:s + bs]
                idx = ids if self.shuffle else slice(s, s + len(ids))
                sw = None if self.sample_weight is None else self.sample_weight[idx]
                yield (None if self._skip(ids) else x[idx]), (y[idx] if wt else None), ids, sw
        elif self.kind == "sequence":
            for k in range(len(x)):
                ids = _sequence_ids(x, k)
                if wt and self._skip(ids) and hasattr(x, "_batch_targets"):
                    yb = x._batch_targets(k)
                    if yb is not None:
                        yield None, yb, ids, None
                        continue
                item = x._batch_part(k, self.part) \
                    if self.part is not None and hasattr(x, "_batch_part") else x[k]
                xb, yb, sw = _split(item, wt)
                if wt and yb is None:
                    raise ValueError("The data yields no targets; expected (x, y) batches")
                yield xb, yb, _sequence_ids(x, k, len(xb)), sw
            if hasattr(x, "on_epoch_end"):
                x.on_epoch_end()
        else:
            if self.exhausted:
                return
            skip = self.cached.has if self.cached is not None else None
            for item, ids in _items_with_ids(x, self.one_shot, skip, self.part):
                xb, yb, sw = _split(item, wt)
                if isinstance(xb, Deferred):      # not loaded: its trunk features are cached
                    xb = None if self._skip(ids) else xb.load()
                if wt and yb is None:
                    raise ValueError("The data yields no targets; expected (x, y) batches")
                yield xb, yb, ids, sw
            self.exhausted = self.one_shot

    def epoch(self, steps=None):
        """Yield one epoch's batches: ``steps`` of them (passes follow one
        another), or with None the rest of the current pass (a new pass if
        none is under way).  Fewer when a generator runs out."""
        taken = 0
        while steps is None or taken < steps:
            if self._pass is None:
                if (steps is None and taken) or self.exhausted:
                    break
                self._pass, self._pos = self._new_pass(), 0
            item = next(self._pass, None)
            if item is None:
                empty = self._pos == 0
                self._pass = None
                if steps is None or empty:
                    break
                continue
            self._pos += 1
            taken += 1
            yield item
        # a pass that ended with this epoch's last batch ends now (on_epoch_end)
        if self._pass is not None and self._pos == self.num_batches:
            next(self._pass, None)
            self._pass = None


def batches(x, y, batch_size, shuffle, steps, with_targets=True, cached=None, part=None):
    """One pass of at most ``steps`` batches (None: all) as (x, y, ids):
    predict, evaluate (sample weights are not applied there)."""
    stream = DataStream(x, y, batch_size, shuffle, with_targets, cached, part=part)
    for i, (xb, yb, ids, _) in enumerate(stream.epoch(None)):
        if steps is not None and i >= steps:
            break
        yield xb, yb, ids


def _items_with_ids(x, one_shot, skip, part=None):
    """(item, ids) of an iterable: an ``aslnet.data.Dataset`` tells the sample ids of
    its batches (None after a ``map``), and leaves unloaded the inputs of batches that
    ``skip(ids)`` says are cached; other iterables do not."""
    if not one_shot and hasattr(x, "_iter_with_ids"):
        return x._iter_with_ids(skip, part)
    return ((item, None) for item in (x if one_shot else iter(x)))


def _sequence_ids(seq, k, n=None):
    """Indices of batch k's samples in a Keras image iterator (index_array),
    or None for other Sequences (or a batch of other than ``n`` samples)."""
    index_array = getattr(seq, "index_array", None)
    bs = getattr(seq, "batch_size", None)
    if index_array is None or bs is None:
        return None
    ids = np.asarray(index_array[k * bs:k * bs + bs])
    return ids if n is None or len(ids) == n else None


_TRANSFORM_METHODS = ("get_random_transform", "random_transform", "apply_transform",
                      "standardize")


def has_augmentation(data):
    """Whether batches of ``data`` may differ from epoch to epoch: a Keras
    image iterator whose ImageDataGenerator has random transforms, a
    ``preprocessing_function`` not known to be deterministic, or transform
    methods overridden by a subclass."""
    gen = getattr(data, "image_data_generator", None)
    if gen is None:
        return False
    from ..preprocessing.image import ImageDataGenerator, is_deterministic
    fn = getattr(gen, "preprocessing_function", None)
    if fn is not None and not is_deterministic(fn):
        return True
    if isinstance(gen, ImageDataGenerator) and any(
            getattr(type(gen), m, None) is not getattr(ImageDataGenerator, m, None)
            for m in _TRANSFORM_METHODS):
        return True
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
    if hasattr(data, "_num_ids"):        # aslnet.data.Dataset: None when ids are not exact
        return data._num_ids()
    n = getattr(data, "n", None)
    return int(n) if isinstance(n, (int, np.integer)) else None


# -- sample weights and validation data, in Keras's forms ---------------------
def sample_weights(yb, sample_weight, class_weight):
    """Per-sample loss weights, shaped to scale the (n, 1, 1, classes)
    targets, or None.  Scaling the targets weights both the loss and its
    gradient: with the softmax output fused with the cross-entropy, the
    gradient is (p * sum(w y) - w y) / n = w (p - y) / n, and the loss
    sum(w_i l_i) / n, Keras's reduction ("sum_over_batch_size")."""
    if sample_weight is not None and class_weight is not None:
        raise ValueError("You cannot pass both class_weight and sample_weight")
    n = len(yb)
    if class_weight is not None:
        if not isinstance(class_weight, dict):
            raise ValueError(f"class_weight must be a dict {{class index: weight}}, got "
                             f"{type(class_weight).__name__}")
        yb = yb.reshape(n, -1)              # one unit (binary): the rounded label, as Keras
        labels = np.argmax(yb, axis=1) if yb.shape[1] > 1 else np.round(yb[:, 0])
        w = np.array([class_weight.get(int(c), 1.0) for c in labels], np.float32)
    elif sample_weight is not None:
        w = np.asarray(sample_weight, np.float32).reshape(-1)
        if len(w) != n:
            raise ValueError(f"sample_weight has {len(w)} values for a batch of {n}")
    else:
        return None
    if not np.all(np.isfinite(w)):
        raise ValueError("sample weights must be finite")
    return w.reshape(n, 1, 1, 1)


def unpack_validation(validation_data):
    """(x, y, sample_weight) from Keras's forms: a tuple or list
    (x, y[, sample_weight]), or one data object (a Sequence or iterable
    yielding (x, y))."""
    if isinstance(validation_data, (tuple, list)):
        if len(validation_data) not in (2, 3):
            raise ValueError("validation_data must be (x_val, y_val), (x_val, y_val, "
                             "val_sample_weight) or a data object; got a sequence of "
                             f"{len(validation_data)} items")
        weights = validation_data[2] if len(validation_data) == 3 else None
        return validation_data[0], validation_data[1], weights
    return validation_data, None, None


def split_validation(x, y, sample_weight, validation_split):
    """Keras's validation_split: the last fraction of the arrays, taken
    before any shuffling: (x, y, sample_weight, validation_data)."""
    if not 0.0 < float(validation_split) < 1.0:
        raise ValueError(f"validation_split must be in (0, 1), got {validation_split}")
    if not _is_array(x):
        raise ValueError("validation_split is only supported for array inputs (a "
                         "generator/Sequence: use ImageDataGenerator(validation_split=)"
                         " with subset=, or validation_data)")
    x, y = np.asarray(x), np.asarray(y)
    split = int(len(x) * (1.0 - float(validation_split)))
    if split == 0 or split == len(x):
        raise ValueError(f"validation_split={validation_split} leaves no training or "
                         f"no validation samples out of {len(x)}")
    val_weight = None
    if sample_weight is not None:        # Keras splits the weights too
        sample_weight = np.asarray(sample_weight)
        sample_weight, val_weight = sample_weight[:split], sample_weight[split:]
    return x[:split], y[:split], sample_weight, (x[split:], y[split:], val_weight)


def evaluation_weights(x, sample_weight):
    """evaluate's ``sample_weight`` (arrays only), checked: a float32 vector
    of one finite weight per sample, or None."""
    if sample_weight is None:
        return None
    if not _is_array(x):
        raise ValueError("sample_weight must be None when x is a generator/Sequence/"
                         "dataset (it yields (x, y, sample_weight))")
    sample_weight = np.asarray(sample_weight, np.float32).reshape(-1)
    if len(sample_weight) != num_samples(x):
        raise ValueError(f"sample_weight has {len(sample_weight)} values for "
                         f"{num_samples(x)} samples")
    if not np.all(np.isfinite(sample_weight)):
        raise ValueError("sample weights must be finite")
    return sample_weight
