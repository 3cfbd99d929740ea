"""MobileNet v1, as ``tf.keras.applications.mobilenet`` (2.3-2.6): same
layer names, order and parameter counts, ending ``global_average_pooling2d``
-> ``reshape_1`` -> ``dropout`` -> ``conv_preds`` -> ``reshape_2`` ->
``predictions``, so ``model.layers[-6]`` is the pooled (None, 1024) output.

ImageNet weights (alpha 1.0) come from the TFLite files described in
``aslnet.pretrained`` (found offline or downloaded and verified)."""
import numpy as np

from .. import pretrained
from ..layers import (Activation, BatchNormalization, Conv2D, DepthwiseConv2D, Dropout,
                      GlobalAveragePooling2D, GlobalMaxPooling2D, Input, ReLU, Reshape,
                      ZeroPadding2D)
from ..models import Model
from ..utils import get_source_inputs
from .imagenet_utils import decode_predictions  # noqa: F401  (Keras's, one home)
from .imagenet_utils import default_size as _default_size
from .imagenet_utils import obtain_input_shape, set_imagenet_weights, warn_224_weights
from .imagenet_utils import preprocess_input as _preprocess_input
from .mobilenet_v2 import check_classifier_activation, check_weights_arg

__all__ = ["MobileNet", "preprocess_input", "decode_predictions"]

_SIZES = (128, 160, 192, 224)     # Keras's sizes with weights of their own

# (pointwise filters, stride) of blocks 1..13
_BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
           (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]


def preprocess_input(x, data_format=None):
    """Scale pixels from [0, 255] to [-1, 1] (Keras's 'tf' mode)."""
    return _preprocess_input(x, mode="tf")


def _conv_block(x, filters, alpha, strides):
    filters = int(filters * alpha)
    x = ZeroPadding2D(padding=((0, 1), (0, 1)), name="conv1_pad")(x)
    x = Conv2D(filters, (3, 3), padding="valid", use_bias=False, strides=strides,
               name="conv1")(x)
    x = BatchNormalization(name="conv1_bn")(x)
    return ReLU(6.0, name="conv1_relu")(x)


def _depthwise_conv_block(x, filters, alpha, depth_multiplier, strides, block_id):
    filters = int(filters * alpha)
    if strides != 1:
        x = ZeroPadding2D(((0, 1), (0, 1)), name=f"conv_pad_{block_id}")(x)
    x = DepthwiseConv2D((3, 3), padding="same" if strides == 1 else "valid",
                        depth_multiplier=depth_multiplier, strides=strides, use_bias=False,
                        name=f"conv_dw_{block_id}")(x)
    x = BatchNormalization(name=f"conv_dw_{block_id}_bn")(x)
    x = ReLU(6.0, name=f"conv_dw_{block_id}_relu")(x)
    x = Conv2D(filters, (1, 1), padding="same", use_bias=False, strides=(1, 1),
               name=f"conv_pw_{block_id}")(x)
    x = BatchNormalization(name=f"conv_pw_{block_id}_bn")(x)
    return ReLU(6.0, name=f"conv_pw_{block_id}_relu")(x)


def MobileNet(input_shape=None, alpha=1.0, depth_multiplier=1, dropout=1e-3,
              include_top=True, weights="imagenet", input_tensor=None, pooling=None,
              classes=1000, classifier_activation="softmax", weights_dir=None):
    """Keras's ``MobileNet``.  ``weights``: 'imagenet', None (random) or the
    path of a weights file saved by aslnet/Keras.  ``weights_dir``: where the
    ImageNet files are (else ``aslnet.pretrained.resolve_weights_dir``).
    Without ``input_shape`` and with ``include_top=False`` the model takes any
    input size from 32x32 up.  The ImageNet weights were trained at 224x224;
    at other sizes they are loaded as they are, with Keras's warning where
    Keras gives it (unknown, non-square or other sizes than 128/160/192/224,
    at which Keras would load weights of their own)."""
    check_weights_arg(weights)
    if weights == "imagenet" and include_top and classes != 1000:
        raise ValueError("If using `weights='imagenet'` with `include_top=True`, `classes` "
                         f"should be 1000.  Received classes={classes}")
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max', got {pooling!r}")
    if input_tensor is not None:
        if not hasattr(input_tensor, "_layer"):
            raise ValueError(f"input_tensor is not a Keras tensor; Received "
                             f"`input_tensor={input_tensor}`")
        input_shape = tuple(input_tensor.shape[1:])
    input_shape = obtain_input_shape(input_shape, _default_size(input_shape, _SIZES),
                                     min_size=32, require_flatten=include_top,
                                     weights=weights)
    rows, cols = input_shape[:2]
    if weights == "imagenet":
        if depth_multiplier != 1:
            raise ValueError("If imagenet weights are being loaded, depth multiplier must be "
                             f"1.  Received depth_multiplier={depth_multiplier}")
        if alpha not in (0.25, 0.50, 0.75, 1.0):
            raise ValueError("If imagenet weights are being loaded, alpha can be one of"
                             f"`0.25`, `0.50`, `0.75` or `1.0` only.  Received alpha={alpha}")
        if alpha != 1.0:
            raise ValueError(f"aslnet has MobileNet's ImageNet weights for alpha=1.0 only; "
                             f"Received alpha={alpha}: pass weights=None for a network of "
                             "that width with random weights")
        warn_224_weights(rows, cols, _SIZES)
        if rows != cols or rows not in _SIZES:
            rows = 224
    if include_top:
        check_classifier_activation(classifier_activation, weights)
    img_input = Input(shape=input_shape) if input_tensor is None else input_tensor

    x = _conv_block(img_input, 32, alpha, strides=(2, 2))
    for block_id, (filters, stride) in enumerate(_BLOCKS, start=1):
        x = _depthwise_conv_block(x, filters, alpha, depth_multiplier, stride, block_id)

    if include_top:
        x = GlobalAveragePooling2D()(x)
        x = Reshape((1, 1, int(1024 * alpha)), name="reshape_1")(x)
        x = Dropout(dropout, name="dropout")(x)
        x = Conv2D(classes, (1, 1), padding="same", name="conv_preds")(x)
        x = Reshape((classes,), name="reshape_2")(x)
        x = Activation(classifier_activation, name="predictions")(x)
    elif pooling == "avg":
        x = GlobalAveragePooling2D()(x)
    elif pooling == "max":
        x = GlobalMaxPooling2D()(x)

    # an input_tensor computed from an Input (e.g. augmentation layers): the model
    # starts at that Input, as Keras's
    model = Model(get_source_inputs(img_input), x, name=f"mobilenet_{alpha:0.2f}_{rows}")
    model.min_input_size = (32, 32)       # Keras's minimum (the C network refuses less)
    if weights == "imagenet":
        set_imagenet_weights(model, "mobilenet", pretrained.mobilenet_v1_weights(weights_dir), weights_dir)
    elif weights is not None:
        model.load_weights(weights)
    return model
