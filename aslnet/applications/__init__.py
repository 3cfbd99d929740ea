"""Keras's ``applications``: ``MobileNet`` (and ``MobileNetV2`` where this
build has it) at the top level, the modules ``mobilenet``, ``mobilenet_v2``
and ``imagenet_utils`` (``preprocess_input``, ``decode_predictions``)."""
from . import imagenet_utils, mobilenet, mobilenet_v2
from .mobilenet import MobileNet
from .mobilenet_v2 import MobileNetV2

__all__ = ["mobilenet", "mobilenet_v2", "imagenet_utils", "MobileNet", "MobileNetV2"]

_OTHERS = ("ResNet", "EfficientNet", "VGG", "Inception", "Xception", "DenseNet", "NASNet",
           "ConvNeXt", "RegNet", "MobileNetV3")


def __getattr__(name):
    if name.startswith(_OTHERS) or name.lower().startswith(
            tuple(o.lower() for o in _OTHERS)):
        raise AttributeError(f"aslnet.applications has no {name}: aslnet runs MobileNet "
                             "(aslnet.applications.MobileNet, and MobileNetV2) only (see "
                             "README's Keras API table)")
    raise AttributeError(f"module 'aslnet.applications' has no attribute {name!r}")
