"""Keras-style applications: ``from aslnet.applications import mobilenet``."""
from . import mobilenet
from .mobilenet import MobileNet

__all__ = ["mobilenet", "MobileNet"]
