"""Data preprocessing, as ``keras.preprocessing``: ``aslnet.preprocessing.image``."""
from . import image

__all__ = ["image"]
