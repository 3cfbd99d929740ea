"""Keras-shaped layers, one module per family as in Keras 3:

    layer.py           Layer (the base), Variable, KerasTensor, Keras's neutral arguments
    initializers.py    kernel_initializer= / bias_initializer= (Keras's by name or object)
    core.py            InputLayer / Input, Dense
    convolutional.py   Conv2D, DepthwiseConv2D, SeparableConv2D
    normalization.py   BatchNormalization
    activations.py     ReLU, LeakyReLU, Softmax, Activation (and the activation names
                       layers accept)
    pooling.py         MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D,
                       GlobalMaxPooling2D
    preprocessing.py   Rescaling, Resizing, CenterCrop, RandomFlip, RandomRotation,
                       RandomZoom, RandomTranslation, RandomContrast
    reshaping.py       ZeroPadding2D, Reshape, Flatten
    regularization.py  Dropout
    merging.py         Add, Multiply, Concatenate (a list of two tensors; the C core's
                       merge ops) and Keras's functions add, multiply, concatenate

A new layer: a class in its family's module (a new module for a new family)
deriving from ``Layer``, with ``_core_ops()`` (the ``(kind, config)`` entries
``aslnet._core.Net.add`` takes; a new C kind is one file in csrc/), ``build``
(its weights, in Keras order and layout) and ``get_config``; its output shape
comes from the C core (``_core_output_shape``) unless it is a Keras shape rule
the core does not know.  Then export it below and add it to ``LAYER_CLASSES``
(how saved and pickled models find it by class name).  Keras's aliases
(MaxPool2D, AvgPool2D, GlobalAvgPool2D, GlobalMaxPool2D) are the same classes.
"""
from .activations import (_ACTIVATIONS, Activation, LeakyReLU, ReLU, Softmax,
                          _activation_name)
from .convolutional import Conv2D, DepthwiseConv2D, SeparableConv2D
from .core import Dense, Input, InputLayer
from .initializers import _conv_fans, _glorot_uniform, _init_value, _initializer
from .layer import (_NEUTRAL_ARGS, KerasTensor, Layer, Variable, _core_output_shape,
                    _is_neutral, _pair, _pop_input_shape, core_shape)
from .merging import Add, Concatenate, Multiply, add, concatenate, multiply
from .normalization import BatchNormalization
from .pooling import (AveragePooling2D, AvgPool2D, GlobalAveragePooling2D, GlobalAvgPool2D,
                      GlobalMaxPool2D, GlobalMaxPooling2D, MaxPool2D, MaxPooling2D,
                      _GlobalPooling2D)
from .preprocessing import (CenterCrop, RandomContrast, RandomFlip, RandomRotation,
                            RandomTranslation, RandomZoom, Rescaling, Resizing)
from .regularization import Dropout
from .reshaping import Flatten, Reshape, ZeroPadding2D

__all__ = [
    "Layer", "InputLayer", "Input", "Conv2D", "DepthwiseConv2D", "ZeroPadding2D",
    "BatchNormalization", "ReLU", "Activation", "GlobalAveragePooling2D",
    "GlobalMaxPooling2D", "Dropout", "Reshape", "Flatten", "Dense", "Add",
    "LeakyReLU", "Softmax", "SeparableConv2D", "MaxPooling2D", "AveragePooling2D",
    "Rescaling", "Resizing", "CenterCrop", "RandomFlip", "RandomRotation", "RandomZoom",
    "RandomTranslation", "RandomContrast", "Multiply", "Concatenate", "add", "multiply",
    "concatenate",
]

# Layers by Keras class name: how aslnet.saving rebuilds a saved model.
LAYER_CLASSES = {cls.__name__: cls for cls in (
    InputLayer, Conv2D, DepthwiseConv2D, ZeroPadding2D, BatchNormalization, ReLU,
    Activation, GlobalAveragePooling2D, GlobalMaxPooling2D, Dropout, Reshape, Flatten, Dense,
    Add, LeakyReLU, Softmax, SeparableConv2D, MaxPooling2D, AveragePooling2D, Rescaling,
    Resizing, CenterCrop, RandomFlip, RandomRotation, RandomZoom, RandomTranslation,
    RandomContrast, Multiply, Concatenate)}


# Keras 3's layers aslnet does not have: importing one works, using it says so
# (see aslnet._missing); any other missing name is an AttributeError listing what is here.
_KERAS_LAYERS = (
    "ActivityRegularization AdaptiveAveragePooling2D AdaptiveMaxPooling2D "
    "AdditiveAttention AlphaDropout Attention Average AveragePooling1D "
    "AveragePooling3D Bidirectional CategoryEncoding Conv1D "
    "Conv1DTranspose Conv2DTranspose Conv3D Conv3DTranspose ConvLSTM2D Convolution2D "
    "Cropping1D Cropping2D Cropping3D Dot ELU EinsumDense Embedding GRU GaussianDropout "
    "GaussianNoise GlobalAveragePooling1D GlobalAveragePooling3D "
    "GlobalMaxPooling1D GlobalMaxPooling3D GroupNormalization Identity "
    "LSTM Lambda LayerNormalization Masking MaxPooling1D "
    "MaxPooling3D Maximum Minimum MultiHeadAttention Normalization PReLU Permute "
    "RNN RandomBrightness RandomCrop "
    "RepeatVector SeparableConv1D "
    "SimpleRNN SpatialDropout2D Subtract TimeDistributed "
    "UnitNormalization UpSampling2D ZeroPadding1D ZeroPadding3D").split()
_WHY = {"Lambda": "aslnet runs layers in C and cannot run a Python function as a layer; "
                  "build the computation from aslnet's layers"}


def __getattr__(name):
    from .._missing import missing
    if name in _KERAS_LAYERS:
        return missing("aslnet.layers", name, _WHY.get(name, "aslnet has "
                       + ", ".join(sorted(LAYER_CLASSES))))
    raise AttributeError(f"module 'aslnet.layers' has no attribute {name!r}; aslnet has "
                         f"{', '.join(sorted(LAYER_CLASSES))} (see README's Keras API table)")
