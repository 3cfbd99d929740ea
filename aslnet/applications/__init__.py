"""Keras-style applications: ``from aslnet.applications import MobileNet, MobileNetV2``
(modules ``mobilenet``, ``mobilenet_v2``)."""
from . import mobilenet, mobilenet_v2
from .mobilenet import MobileNet
from .mobilenet_v2 import MobileNetV2

__all__ = ["mobilenet", "mobilenet_v2", "MobileNet", "MobileNetV2"]
