"""Training and inference: the ``Trainer`` the model classes inherit
(compile/fit/evaluate/predict, one training step), the data adapters
(arrays, image iterators, generators, datasets) and the frozen-trunk cache."""
from .trainer import Trainer

__all__ = ["Trainer"]
