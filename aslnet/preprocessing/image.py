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
from .image_generator import ImageDataGenerator
from .image_utils import (ImageCache, array_to_img, deterministic, image_cache, img_to_array,
                          is_deterministic, load_img, save_img)
from .iterators import DirectoryIterator, Iterator, NumpyArrayIterator, list_class_files

__all__ = [
    "load_img", "img_to_array", "array_to_img", "save_img", "ImageDataGenerator",
    "Iterator", "DirectoryIterator", "NumpyArrayIterator", "ImageCache", "image_cache",
    "deterministic", "is_deterministic", "list_class_files",
]
