"""Utilities, as ``keras.utils``: ``Progbar``, and ``split_dataset`` for the tutorial's split."""
from .dataset import split_dataset
from .progbar import Progbar

__all__ = ["Progbar", "split_dataset"]
