"""A ``tf.data.Dataset``-shaped pipeline over NumPy arrays (public as ``aslnet.data``).

``image_dataset_from_directory`` returns a :class:`Dataset`, and the methods
Keras scripts chain on it work as tf.data's: ``map``, ``prefetch``,
``cache``, ``shuffle``, ``take``, ``skip``, ``batch``, ``unbatch``,
``repeat``, iteration, ``len`` / ``cardinality()``.  Elements are NumPy
arrays (``EagerArray``, an ndarray with tf's ``.numpy()``), or tuples of
them.  Each ``iter()`` is a new pass: a shuffle reshuffles, a repeat
starts over, a cache replays.

Sample identities.  Every element also carries the index of the sample it
came from in the source (for a batch, one index per row) while that is
exact: shuffling, batching, taking, skipping, repeating, caching and
prefetching move samples without changing them; ``map`` may change them, so
after a ``map`` the identities are gone.  ``fit`` uses them to compute the
frozen trunk once per sample (``trainers.data_adapters``): a mapped dataset
is recomputed every epoch, never served stale features.

Differences from tf.data: functions given to ``map`` run eagerly on NumPy
values (a TensorFlow graph-only function fails with a message saying so);
the shuffle order is a different random stream than TensorFlow's (same
buffer semantics, and deterministic for a seed); ``class_names`` and
``file_paths`` carry over to derived datasets (tf.data drops them).
"""
import math
import os
import pickle
import queue
import threading
import traceback

import numpy as np

from .. import backend

__all__ = ["Dataset", "Deferred", "EagerArray", "AUTOTUNE", "INFINITE_CARDINALITY",
           "UNKNOWN_CARDINALITY"]

AUTOTUNE = -1               # tf.data.AUTOTUNE
INFINITE_CARDINALITY = -1   # tf.data.INFINITE_CARDINALITY
UNKNOWN_CARDINALITY = -2    # tf.data.UNKNOWN_CARDINALITY
_AUTOTUNE_PREFETCH = 2      # batches a prefetch(AUTOTUNE) keeps ready


class EagerArray(np.ndarray):
    """A NumPy array with an eager tensor's ``.numpy()``, so that
    ``images[i].numpy().astype("uint8")`` (TensorFlow's tutorials) works."""

    def numpy(self):
        """The values as a plain NumPy array (a tensor's ``.numpy()``)."""
        return np.asarray(self)


def _eager(value):
    """Elements as NumPy arrays: arrays (and tensors) become EagerArrays, tuples stay tuples,
    dicts stay dicts."""
    if isinstance(value, tuple):
        return tuple(_eager(v) for v in value)
    if isinstance(value, list):
        return tuple(_eager(v) for v in value)
    if isinstance(value, dict):
        return {k: _eager(v) for k, v in value.items()}
    if isinstance(value, EagerArray):
        return value
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        value = value.numpy()            # a TensorFlow/PyTorch tensor
    return np.asarray(value).view(EagerArray)


def _check_count(name, n, allow_minus_one=True):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or \
            n < (-1 if allow_minus_one else 1):
        want = "an integer >= -1 (-1: all)" if allow_minus_one else "a positive integer"
        raise ValueError(f"{name} must be {want}, got {n!r}")
    return int(n)


class Dataset:
    """Base of the pipeline nodes.  A node implements ``_pairs()``: a fresh
    generator of (element, ids) for one pass, ids being the source indices of
    the element's samples (an int, or an int array for a batch) or None."""

    _takes_skip = False     # whether ``_pairs`` takes fit's ``skip`` (see _iter_with_ids)

    def __init__(self, parent=None):
        self._parent = parent
        self.class_names = getattr(parent, "class_names", None)
        self.file_paths = getattr(parent, "file_paths", None)

    # -- sources --------------------------------------------------------------
    @staticmethod
    def from_tensor_slices(tensors):
        """A dataset of the slices of ``tensors`` (an array, or a tuple/dict of
        arrays of the same length) along their first axis."""
        return _Slices(tensors)

    # -- iteration ------------------------------------------------------------
    def _pairs(self):
        raise NotImplementedError

    def __iter__(self):
        for element, _ in self._pairs():
            yield element

    def as_numpy_iterator(self):
        """The elements as NumPy arrays (they are already)."""
        return iter(self)

    def _iter_with_ids(self, skip=None, part=None):
        """(element, ids) pairs: the sample identities ``fit`` uses for its
        frozen-trunk cache (None where unknown).  ``skip(ids)``: True when the
        caller holds what it needs of those samples' inputs; a source may then
        hand out a ``Deferred`` in place of the batch's inputs (load it if
        still needed), where no node between them looks at the inputs.
        ``part(n)``: the rows [lo, hi) of a batch of n that the caller uses (a
        data-parallel rank's slice); such a source may then load only those
        and leave the other rows zero, under the same condition."""
        return self._pairs(skip, part) if self._takes_skip else self._pairs()

    def _num_ids(self):
        """How many distinct sample ids the source has, if every element of
        this dataset carries exact ids; else None."""
        return None if self._parent is None else self._parent._num_ids()

    # -- size -----------------------------------------------------------------
    def cardinality(self):
        """Elements in one pass, as a NumPy int64: INFINITE_CARDINALITY (-1)
        or UNKNOWN_CARDINALITY (-2) where not finite and known."""
        return np.int64(self._cardinality())

    def _cardinality(self):
        return self._parent._cardinality()

    def __len__(self):
        n = self._cardinality()
        if n == INFINITE_CARDINALITY:
            raise TypeError("The dataset is infinite.")
        if n == UNKNOWN_CARDINALITY:
            raise TypeError("The dataset length is unknown.")
        return n

    def __bool__(self):
        return True

    def __repr__(self):
        n = self._cardinality()
        size = {INFINITE_CARDINALITY: "infinite", UNKNOWN_CARDINALITY: "unknown"}.get(n, n)
        return f"<aslnet.data.{type(self).__name__.lstrip('_')}Dataset cardinality={size}>"

    # -- transformations --------------------------------------------------------
    def map(self, map_func, num_parallel_calls=None, deterministic=None, name=None):
        """Apply ``map_func`` to each element (a tuple element is passed as
        separate arguments, as tf.data does).  It runs eagerly on NumPy arrays:
        NumPy code and Keras/aslnet ``preprocess_input`` work as they are.
        ``num_parallel_calls`` (None, AUTOTUNE or a count) is accepted; the
        function runs in the pipeline's thread (behind a ``prefetch``, in
        parallel with training)."""
        if not callable(map_func):
            raise TypeError(f"map_func must be callable, got {type(map_func).__name__}")
        if num_parallel_calls is not None and num_parallel_calls != AUTOTUNE:
            _check_count("num_parallel_calls", num_parallel_calls, allow_minus_one=False)
        return _Map(self, map_func)

    def prefetch(self, buffer_size, name=None):
        """Prepare up to ``buffer_size`` elements ahead in a background thread
        (AUTOTUNE: 2), so loading overlaps with training."""
        if buffer_size != AUTOTUNE:
            _check_count("buffer_size", buffer_size, allow_minus_one=False)
        return _Prefetch(self, _AUTOTUNE_PREFETCH if buffer_size == AUTOTUNE else buffer_size)

    def cache(self, filename="", name=None):
        """Keep the elements of the first complete pass and replay them in later
        passes: in memory (``filename=""``), or in the file ``filename`` (kept
        across runs, as tf.data's file cache: delete it when the data change)."""
        if not isinstance(filename, (str, os.PathLike)):
            raise TypeError(f"filename must be a string, got {type(filename).__name__}")
        return _Cache(self, os.fspath(filename))

    def shuffle(self, buffer_size, seed=None, reshuffle_each_iteration=True, name=None):
        """tf.data's buffer shuffle: a random element of a buffer of
        ``buffer_size`` is emitted and replaced by the next one.  With a
        ``seed`` (or after ``aslnet.utils.set_random_seed``) the orders are
        reproducible; each pass draws a new order unless
        ``reshuffle_each_iteration=False``."""
        buffer_size = _check_count("buffer_size", buffer_size, allow_minus_one=True)
        if buffer_size == 0:
            raise ValueError("buffer_size must be positive (or -1: the whole dataset), got 0")
        if seed is None:
            seed = int(backend.rng().integers(2 ** 63))
        elif isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
        return _Shuffle(self, buffer_size, int(seed), bool(reshuffle_each_iteration))

    def take(self, count, name=None):
        """The first ``count`` elements (-1: all)."""
        return _Take(self, _check_count("count", count))

    def skip(self, count, name=None):
        """All but the first ``count`` elements (-1: skip all)."""
        return _Skip(self, _check_count("count", count))

    def batch(self, batch_size, drop_remainder=False, num_parallel_calls=None,
              deterministic=None, name=None):
        """Stack ``batch_size`` consecutive elements into one (a shorter last
        batch unless ``drop_remainder``)."""
        return _Batch(self, _check_count("batch_size", batch_size, allow_minus_one=False),
                      bool(drop_remainder))

    def unbatch(self, name=None):
        """Split each element along its first axis into separate elements."""
        return _Unbatch(self)

    def repeat(self, count=None, name=None):
        """Pass over the data ``count`` times (None or -1: forever)."""
        count = -1 if count is None else _check_count("count", count)
        return _Repeat(self, count)


class _Slices(Dataset):
    def __init__(self, tensors):
        super().__init__()
        if isinstance(tensors, list):      # tf.data: a list is one tensor, not a structure
            tensors = np.asarray(tensors)
        self._data = _eager(tensors)
        leaves = list(self._data.values()) if isinstance(self._data, dict) else \
            list(self._data) if isinstance(self._data, tuple) else [self._data]
        if not leaves or any(leaf.ndim == 0 for leaf in leaves):
            raise ValueError("from_tensor_slices needs arrays with a first axis to slice")
        lengths = {len(leaf) for leaf in leaves}
        if len(lengths) != 1:
            raise ValueError(f"from_tensor_slices: arrays of different lengths {sorted(lengths)}")
        self._n = lengths.pop()

    def _pairs(self):
        for i in range(self._n):
            yield _index(self._data, i), i

    def _num_ids(self):
        return self._n

    def _cardinality(self):
        return self._n


def _index(element, idx):
    if isinstance(element, tuple):
        return tuple(_index(e, idx) for e in element)
    if isinstance(element, dict):
        return {k: _index(v, idx) for k, v in element.items()}
    return element[idx]


def _is_tf_failure(exc):
    """Whether an exception came out of TensorFlow (its frames or its type)."""
    if (type(exc).__module__ or "").startswith("tensorflow"):
        return True
    return any(os.sep + "tensorflow" + os.sep in frame.filename
               for frame in traceback.extract_tb(exc.__traceback__))


class _Map(Dataset):
    def __init__(self, parent, fn):
        super().__init__(parent)
        self._fn = fn

    def _num_ids(self):
        return None          # the function may change samples: no identities after a map

    def _pairs(self):
        for element, _ in self._parent._pairs():
            try:
                out = self._fn(*element) if isinstance(element, tuple) else self._fn(element)
            except Exception as e:
                if _is_tf_failure(e):
                    raise TypeError(
                        f"Dataset.map: the function failed inside TensorFlow ({type(e).__name__}:"
                        f" {e}).  aslnet datasets are not tf.data graphs: map functions run "
                        "eagerly on NumPy arrays, so tf.* functions that need graph tensors "
                        "(tf.py_function, tf.numpy_function, symbolic shapes) do not work.  "
                        "Write the function with NumPy, or use aslnet/Keras preprocessing "
                        "(e.g. applications.mobilenet.preprocess_input).") from e
                raise
            yield _eager(out), None


class Deferred:
    """The inputs of a batch not loaded yet: ``load()`` loads them."""

    def __init__(self, load):
        self.load = load


class _Prefetch(Dataset):
    _takes_skip = True

    def __init__(self, parent, size):
        super().__init__(parent)
        self._size = size

    def _pairs(self, skip=None, part=None):
        parent = self._parent
        upstream = parent._pairs(skip, part) if parent._takes_skip else parent._pairs()
        return self._ahead(upstream)

    def _ahead(self, upstream):
        q, stop = queue.Queue(self._size), threading.Event()
        done = object()

        def work():
            def put(item):
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        return True
                    except queue.Full:
                        pass
                return False
            try:
                for pair in upstream:
                    if not put(pair):
                        return
                put(done)
            except BaseException as e:          # noqa: BLE001  (handed to the consumer)
                put(e)

        thread = threading.Thread(target=work, name="aslnet-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                item = q.get()
                if item is done:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            thread.join()


class _Cache(Dataset):
    def __init__(self, parent, filename):
        super().__init__(parent)
        self._filename = filename
        self._memory = None

    def _pairs(self):
        if self._memory is not None:
            yield from self._memory
            return
        if self._filename and os.path.exists(self._filename):
            with open(self._filename, "rb") as f:
                while True:
                    try:
                        yield pickle.load(f)
                    except EOFError:
                        return
        # first complete pass: record it (a pass stopped early records nothing)
        if not self._filename:
            kept = []
            for pair in self._parent._pairs():
                kept.append(pair)
                yield pair
            self._memory = kept
            return
        partial = f"{self._filename}.partial-{os.getpid()}-{threading.get_ident()}"
        try:
            with open(partial, "wb") as f:
                for pair in self._parent._pairs():
                    pickle.dump(pair, f, protocol=pickle.HIGHEST_PROTOCOL)
                    yield pair
            os.replace(partial, self._filename)
        finally:
            if os.path.exists(partial):
                os.remove(partial)


def _shuffled(pairs, buffer_size, rng):
    """tf.data's shuffle: fill a buffer, emit a random slot and refill it."""
    buf = []
    for pair in pairs:
        if len(buf) < buffer_size or buffer_size < 0:
            buf.append(pair)
            continue
        k = int(rng.integers(len(buf)))
        yield buf[k]
        buf[k] = pair
    while buf:
        k = int(rng.integers(len(buf)))
        buf[k], buf[-1] = buf[-1], buf[k]
        yield buf.pop()


class _Shuffle(Dataset):
    def __init__(self, parent, buffer_size, seed, reshuffle):
        super().__init__(parent)
        self._buffer_size, self._seed, self._reshuffle = buffer_size, seed, reshuffle
        self._passes = 0

    def _pairs(self):
        k = self._passes if self._reshuffle else 0
        self._passes += 1
        rng = np.random.default_rng([self._seed, k])
        yield from _shuffled(self._parent._pairs(), self._buffer_size, rng)


class _Take(Dataset):
    def __init__(self, parent, count):
        super().__init__(parent)
        self._count = count

    def _pairs(self):
        if self._count == 0:
            return
        for i, pair in enumerate(self._parent._pairs()):
            yield pair
            if i + 1 == self._count:
                return

    def _cardinality(self):
        n = self._parent._cardinality()
        if self._count == -1:
            return n
        if n == INFINITE_CARDINALITY:
            return self._count
        return min(n, self._count) if n >= 0 else UNKNOWN_CARDINALITY


class _Skip(Dataset):
    def __init__(self, parent, count):
        super().__init__(parent)
        self._count = count

    def _pairs(self):
        for i, pair in enumerate(self._parent._pairs()):
            if self._count != -1 and i >= self._count:
                yield pair

    def _cardinality(self):
        n = self._parent._cardinality()
        if n < 0:
            return n
        return 0 if self._count == -1 else max(n - self._count, 0)


def _stack(elements):
    first = elements[0]
    if isinstance(first, tuple):
        return tuple(_stack([e[i] for e in elements]) for i in range(len(first)))
    if isinstance(first, dict):
        return {k: _stack([e[k] for e in elements]) for k in first}
    try:
        return np.stack(elements).view(EagerArray)
    except ValueError as e:
        shapes = sorted({tuple(np.shape(x)) for x in elements})
        raise ValueError(f"Dataset.batch: elements of different shapes {shapes} cannot be "
                         "stacked into one batch (resize them first)") from e


class _Batch(Dataset):
    def __init__(self, parent, batch_size, drop_remainder):
        super().__init__(parent)
        self._batch_size, self._drop = batch_size, drop_remainder

    def _pairs(self):
        chunk = []
        for pair in self._parent._pairs():
            chunk.append(pair)
            if len(chunk) == self._batch_size:
                yield self._make(chunk)
                chunk = []
        if chunk and not self._drop:
            yield self._make(chunk)

    @staticmethod
    def _make(chunk):
        ids = [i for _, i in chunk]
        ok = all(isinstance(i, (int, np.integer)) for i in ids)
        return _stack([e for e, _ in chunk]), (np.array(ids, np.int64) if ok else None)

    def _cardinality(self):
        n = self._parent._cardinality()
        if n < 0:
            return n
        return n // self._batch_size if self._drop else math.ceil(n / self._batch_size)


class _Unbatch(Dataset):
    def _pairs(self):
        for element, ids in self._parent._pairs():
            n = _rows(element)
            if ids is not None and np.ndim(ids) != 1:
                ids = None
            for i in range(n):
                yield _index(element, i), (None if ids is None else int(ids[i]))

    def _cardinality(self):
        n = self._parent._cardinality()
        return INFINITE_CARDINALITY if n == INFINITE_CARDINALITY else \
            (0 if n == 0 else UNKNOWN_CARDINALITY)


def _rows(element):
    leaves = list(element.values()) if isinstance(element, dict) else \
        list(element) if isinstance(element, tuple) else [element]
    sizes = {len(leaf) if np.ndim(leaf) else None for leaf in leaves}
    if None in sizes:
        raise ValueError("Dataset.unbatch: an element has a scalar part: nothing to unbatch")
    if len(sizes) != 1:
        raise ValueError(f"Dataset.unbatch: the parts of an element have different first "
                         f"dimensions {sorted(sizes)}")
    return sizes.pop()


class _Repeat(Dataset):
    def __init__(self, parent, count):
        super().__init__(parent)
        self._count = count

    def _pairs(self):
        k = 0
        while self._count == -1 or k < self._count:
            empty = True
            for pair in self._parent._pairs():
                empty = False
                yield pair
            if empty:         # tf.data: repeating an empty dataset ends
                return
            k += 1

    def _cardinality(self):
        n = self._parent._cardinality()
        if self._count == -1:
            return 0 if n == 0 else (UNKNOWN_CARDINALITY if n == UNKNOWN_CARDINALITY
                                     else INFINITE_CARDINALITY)
        return n * self._count if n >= 0 else n
