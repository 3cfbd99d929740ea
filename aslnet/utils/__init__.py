"""Utilities, as ``keras.utils``: ``Progbar``, and ``split_dataset`` for the tutorial's split."""
from ..backend import set_random_seed
from .dataset import split_dataset
from .progbar import Progbar

__all__ = ["Progbar", "set_random_seed", "split_dataset"]
