"""MobileNetV2, as ``keras.applications.mobilenet_v2``: ``MobileNetV2`` with Keras's
signature, layer names, order and parameter counts, its input preprocessing and ImageNet
decoding.  The architecture is ``aslnet.applications._mobilenet_v2_spec`` (the table
checked against Keras layer by layer); the ImageNet weights (alpha 1.0) are
``aslnet.pretrained.mobilenet_v2_weights``, dequantized from TFLite with batch norm folded
as for v1.

Any input size: ``include_top=False`` without ``input_shape`` builds a ``(None, None, 3)``
model that runs on batches of any size from 32x32 up (the C network plans each size once
and keeps it)."""
import os

from .. import pretrained
from ..layers import (Add, BatchNormalization, Conv2D, Dense, DepthwiseConv2D,
                      GlobalAveragePooling2D, GlobalMaxPooling2D, Input, ReLU, ZeroPadding2D)
from ..models import Model
from ..utils import get_source_inputs
from . import _mobilenet_v2_spec as spec
from .imagenet_utils import decode_predictions
from .imagenet_utils import default_size as _default_size
from .imagenet_utils import obtain_input_shape, set_imagenet_weights, warn_224_weights
from .imagenet_utils import preprocess_input as _preprocess_input

__all__ = ["MobileNetV2", "preprocess_input", "decode_predictions"]

_SIZES = (96, 128, 160, 192, 224)        # Keras's sizes with weights of their own
_KERAS_ALPHAS = (0.35, 0.50, 0.75, 1.0, 1.3, 1.4)
_LAYERS = {"Conv2D": Conv2D, "BatchNormalization": BatchNormalization, "ReLU": ReLU,
           "ZeroPadding2D": ZeroPadding2D, "DepthwiseConv2D": DepthwiseConv2D,
           "GlobalAveragePooling2D": GlobalAveragePooling2D,
           "GlobalMaxPooling2D": GlobalMaxPooling2D, "Dense": Dense}


def preprocess_input(x, data_format=None):
    """Scale pixels from [0, 255] to [-1, 1] (Keras's 'tf' mode: ``x / 127.5 - 1``)."""
    return _preprocess_input(x, data_format=data_format, mode="tf")


def check_weights_arg(weights):
    if not (weights in ("imagenet", None) or (isinstance(weights, (str, os.PathLike))
                                              and os.path.exists(weights))):
        raise ValueError("The `weights` argument should be either `None` (random "
                         "initialization), `imagenet` (pre-training on ImageNet), or the "
                         f"path to the weights file to be loaded.  Received `weights={weights}`")


def check_classifier_activation(classifier_activation, weights):
    """Keras's ``validate_activation``: pretrained weights with softmax or logits only."""
    if weights is not None and classifier_activation not in ("softmax", None, "linear"):
        raise ValueError("Only `None` and `softmax` activations are allowed for the "
                         "`classifier_activation` argument when using pretrained weights, "
                         "with `include_top=True`; Received: "
                         f"classifier_activation={classifier_activation}")


def MobileNetV2(input_shape=None, alpha=1.0, include_top=True, weights="imagenet",
                input_tensor=None, pooling=None, classes=1000,
                classifier_activation="softmax", name=None, weights_dir=None):
    """Keras's ``MobileNetV2``.  ``weights``: 'imagenet' (alpha 1.0), None (random) or
    the path of a weights file saved by aslnet/Keras; ``weights_dir``: where the ImageNet
    files are (else ``aslnet.pretrained.resolve_weights_dir``).  Without ``input_shape``
    and with ``include_top=False`` the model takes any input size from 32x32 up.  The
    ImageNet weights were trained at 224x224; at other sizes they are loaded as they are
    (with Keras's warning where Keras gives it: unknown, non-square or other sizes than
    96/128/160/192/224, at which Keras would load weights of their own)."""
    check_weights_arg(weights)
    if weights == "imagenet" and include_top and classes != 1000:
        raise ValueError('If using `weights="imagenet"` with `include_top` as true, '
                         f"`classes` should be 1000. Received `classes={classes}`")
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max', got {pooling!r}")
    if input_tensor is not None:
        if not hasattr(input_tensor, "_layer"):
            raise ValueError(f"input_tensor is not a Keras tensor; Received "
                             f"`input_tensor={input_tensor}`")
        if input_shape is not None and tuple(input_tensor.shape[1:]) != tuple(input_shape):
            raise ValueError(f"input_tensor.shape[1:] must equal input_shape; Received "
                             f"`input_tensor.shape={input_tensor.shape}`, "
                             f"`input_shape={input_shape}`")
        input_shape = tuple(input_tensor.shape[1:])
    input_shape = obtain_input_shape(input_shape, _default_size(input_shape, _SIZES),
                                     min_size=32, require_flatten=include_top,
                                     weights=weights)
    rows, cols = input_shape[:2]
    if weights == "imagenet":
        if alpha not in _KERAS_ALPHAS:
            raise ValueError("If imagenet weights are being loaded, alpha must be one of "
                             "`0.35`, `0.50`, `0.75`, `1.0`, `1.3` or `1.4` only; Received "
                             f"`alpha={alpha}`")
        if alpha != 1.0:
            raise ValueError(f"aslnet has MobileNetV2's ImageNet weights for alpha=1.0 only; "
                             f"Received `alpha={alpha}`: pass weights=None for a network of "
                             "that width with random weights")
        warn_224_weights(rows, cols, _SIZES)
        if rows != cols or rows not in _SIZES:
            rows = 224
    if include_top:
        check_classifier_activation(classifier_activation, weights)
    img_input = Input(shape=input_shape) if input_tensor is None else input_tensor

    tensors = {"input": img_input}
    x = img_input
    for s in spec.layer_table(alpha, input_shape=input_shape, include_top=include_top,
                              pooling=pooling, classes=classes,
                              classifier_activation=classifier_activation):
        if s.kind == "Add":
            layer = Add(name=s.name)
            x = layer([tensors[n] for n in s.inputs])
        else:
            auto = s.kind in ("GlobalAveragePooling2D", "GlobalMaxPooling2D")
            layer = _LAYERS[s.kind](name=None if auto else s.name, **s.config)
            x = layer(tensors[s.inputs[0]])
        tensors[s.name] = x
    model = Model(get_source_inputs(img_input), x,      # (as mobilenet.py)
                  name=name or f"mobilenetv2_{float(alpha):0.2f}_{rows}")
    model.min_input_size = (32, 32)       # Keras's minimum (the C network refuses less)
    if weights == "imagenet":
        set_imagenet_weights(model, "mobilenet_v2", pretrained.mobilenet_v2_weights(weights_dir), weights_dir)
    elif weights is not None:
        model.load_weights(weights)
    return model
