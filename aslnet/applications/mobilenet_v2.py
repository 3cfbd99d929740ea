"""MobileNetV2's input preprocessing and ImageNet decoding, as
``tf.keras.applications.mobilenet_v2``.  The architecture is
``aslnet.applications._mobilenet_v2_spec``; the ImageNet weights are
``aslnet.pretrained.mobilenet_v2_weights``."""
from .imagenet_utils import decode_predictions
from .imagenet_utils import preprocess_input as _preprocess_input

__all__ = ["preprocess_input", "decode_predictions"]


def preprocess_input(x, data_format=None):
    """Scale pixels from [0, 255] to [-1, 1] (Keras's 'tf' mode: ``x / 127.5 - 1``)."""
    return _preprocess_input(x, data_format=data_format, mode="tf")
