"""MobileNet v1, as ``tf.keras.applications.mobilenet`` (2.3-2.6): same
layer names, order and parameter counts, ending ``global_average_pooling2d``
-> ``reshape_1`` -> ``dropout`` -> ``conv_preds`` -> ``reshape_2`` ->
``predictions``, so ``model.layers[-6]`` is the pooled (None, 1024) output.

ImageNet weights (alpha 1.0) come from the TFLite files described in
``aslnet.pretrained`` (found offline or downloaded and verified)."""
import os
import warnings

import numpy as np

from .. import pretrained
from ..layers import (Activation, BatchNormalization, Conv2D, DepthwiseConv2D, Dropout,
                      GlobalAveragePooling2D, GlobalMaxPooling2D, Input, ReLU, Reshape,
                      ZeroPadding2D)
from ..models import Model
from .imagenet_utils import decode_predictions  # noqa: F401  (Keras's, one home)
from .imagenet_utils import preprocess_input as _preprocess_input

__all__ = ["MobileNet", "preprocess_input", "decode_predictions"]

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
    ImageNet files are (else ``aslnet.pretrained.resolve_weights_dir``)."""
    if not (weights in ("imagenet", None) or (isinstance(weights, (str, os.PathLike))
                                              and os.path.exists(weights))):
        raise ValueError("The `weights` argument should be either `None` (random "
                         "initialization), `imagenet` (pre-training on ImageNet), or the "
                         f"path to the weights file to be loaded; got {weights!r}")
    if weights == "imagenet":
        if include_top and classes != 1000:
            raise ValueError("If using `weights` as `'imagenet'` with `include_top` as true, "
                             "`classes` should be 1000")
        if alpha != 1.0 or depth_multiplier != 1:
            raise ValueError("aslnet ships ImageNet weights for alpha=1.0, depth_multiplier=1 "
                             f"only; got alpha={alpha}, depth_multiplier={depth_multiplier}")
    if alpha not in (0.25, 0.50, 0.75, 1.0):
        raise ValueError(f"alpha can be one of 0.25, 0.50, 0.75 or 1.0, got {alpha}")
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max', got {pooling!r}")
    if input_tensor is not None:
        img_input = input_tensor
        input_shape = tuple(input_tensor.shape[1:])
    else:
        input_shape = tuple(input_shape or (224, 224, 3))
        if len(input_shape) != 3 or input_shape[2] != 3 and weights == "imagenet":
            raise ValueError(f"input_shape must be (rows, cols, 3) for ImageNet weights, "
                             f"got {input_shape}")
        if min(input_shape[:2]) < 32:
            raise ValueError(f"Input size must be at least 32x32; got {input_shape}")
        img_input = Input(shape=input_shape)

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

    model = Model(img_input, x, name=f"mobilenet_{alpha:0.2f}_{input_shape[0]}")
    if weights == "imagenet":
        if tuple(input_shape[:2]) != (224, 224):
            warnings.warn(f"input_shape {tuple(input_shape)}: aslnet has the ImageNet weights "
                          "trained at 224x224 only, loaded as they are (Keras loads weights "
                          "trained at 128/160/192 for those sizes); accuracy may be lower "
                          "than at 224", stacklevel=2)
        named = pretrained.mobilenet_v1_weights(weights_dir)
        for layer in model.layers:
            if layer.weights:
                layer.set_weights(named[layer.name])
    elif weights is not None:
        model.load_weights(weights)
    return model
