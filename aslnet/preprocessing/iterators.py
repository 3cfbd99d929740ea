"""Keras's image iterators: ``Iterator`` (batches, shuffling and seeding as
Keras), ``NumpyArrayIterator`` and ``DirectoryIterator`` (the files of a
folder per class), with Keras's file listing."""
import os
import threading
import warnings
from multiprocessing.pool import ThreadPool

import numpy as np
from PIL import Image

from . import image_utils
from .image_utils import (_CHANNELS, _PIL_INTERPOLATION_METHODS, _pil_nbytes, _resize,
                          array_to_img)



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

    def _get_batches_of_transformed_samples(self, index_array, rng, rows=None):
        """The batch of samples ``index_array``, augmented with draws from ``rng``;
        ``rows`` (lo, hi): only those rows read and transformed (see ``_batch_part``)."""
        raise NotImplementedError

    def _batch_part(self, idx, part):
        """Batch ``idx`` as ``self[idx]`` gives it (the iterator advances alike and
        draws the same random transforms), but only rows ``part(n)`` = [lo, hi) of
        its n are read and transformed, the others left zero: a data-parallel
        rank's slice (fit's ``part``), so that no rank decodes the whole batch."""
        if self.save_to_dir:        # (saving writes every image of the batch)
            return self[idx]
        index_array, rng = self._batch_indices(idx)
        return self._get_batches_of_transformed_samples(index_array, rng,
                                                        part(len(index_array)))

    def _fill(self, batch_x, index_array, rng, rows, load):
        """batch_x[i] = the transformed ``load(j)`` for each sample j of the batch,
        rows outside ``rows`` (lo, hi) only drawing their random transform."""
        lo, hi = rows if rows is not None else (0, len(index_array))
        gen = self.image_data_generator
        for i, j in enumerate(index_array):
            if lo <= i < hi:
                batch_x[i] = self._transformed(load(j), rng)
            elif gen:   # the draws loading would make (flips draw even when off)
                gen._random_transform_params(batch_x.shape[1:], rng)

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

    def _get_batches_of_transformed_samples(self, index_array, rng, rows=None):
        batch_x = np.zeros((len(index_array),) + self.x.shape[1:], dtype=self.dtype)
        self._fill(batch_x, index_array, rng, rows, self.x.__getitem__)
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

    cache: keep decoded images in ``image_utils.image_cache`` (see ``ImageCache``), so that
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
        self.cache = image_utils.image_cache if cache else None

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
            decoded = image_utils.load_img(path, color_mode=self.color_mode)
            img = _resize(decoded, self.target_size, self.interpolation, self.keep_aspect_ratio)
        except OSError as e:
            raise OSError(f"Cannot read image {path}: {e}") from e
        x = np.asarray(img)
        x = x.reshape(x.shape[:2] + (-1,))
        if key is not None:
            # keep the smaller: small photos before resizing, large ones after
            self.cache.put(key, decoded if _pil_nbytes(decoded) < x.nbytes else x)
        return x

    def _get_batches_of_transformed_samples(self, index_array, rng, rows=None):
        batch_x = np.zeros((len(index_array),) + self.image_shape, dtype=self.dtype)
        self._fill(batch_x, index_array, rng, rows, self._load)
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
