"""Keras-shaped layers, one module per family as in Keras 3:

    layer.py           Layer (the base), Variable, KerasTensor, Keras's neutral arguments
    initializers.py    kernel_initializer= / bias_initializer= (Keras's by name or object)
    core.py            InputLayer / Input, Dense
    convolutional.py   Conv2D, DepthwiseConv2D
    normalization.py   BatchNormalization
    activations.py     ReLU, Activation (and the activation names layers accept)
    pooling.py         GlobalAveragePooling2D, GlobalMaxPooling2D
    reshaping.py       ZeroPadding2D, Reshape, Flatten
    regularization.py  Dropout
    merging.py         Add (a list of two tensors; the C core's residual add)

A new layer: a class in its family's module (a new module for a new family)
deriving from ``Layer``, with ``_core_ops()`` (the ``(kind, config)`` entries
``aslnet._core.Net.add`` takes; a new C kind is one file in csrc/), ``build``
(its weights, in Keras order and layout) and ``get_config``; its output shape
comes from the C core (``_core_output_shape``) unless it is a Keras shape rule
the core does not know.  Then export it below and add it to ``LAYER_CLASSES``
(how saved and pickled models find it by class name).
"""
from .activations import _ACTIVATIONS, Activation, ReLU, _activation_name
from .convolutional import Conv2D, DepthwiseConv2D
from .core import Dense, Input, InputLayer
from .initializers import _conv_fans, _glorot_uniform, _init_value, _initializer
from .layer import (_NEUTRAL_ARGS, KerasTensor, Layer, Variable, _core_output_shape,
                    _is_neutral, _pair, _pop_input_shape, core_shape)
from .merging import Add
from .normalization import BatchNormalization
from .pooling import GlobalAveragePooling2D, GlobalMaxPooling2D, _GlobalPooling2D
from .regularization import Dropout
from .reshaping import Flatten, Reshape, ZeroPadding2D

__all__ = [
    "Layer", "InputLayer", "Input", "Conv2D", "DepthwiseConv2D", "ZeroPadding2D",
    "BatchNormalization", "ReLU", "Activation", "GlobalAveragePooling2D",
    "GlobalMaxPooling2D", "Dropout", "Reshape", "Flatten", "Dense", "Add",
]

# Layers by Keras class name: how aslnet.saving rebuilds a saved model.
LAYER_CLASSES = {cls.__name__: cls for cls in (
    InputLayer, Conv2D, DepthwiseConv2D, ZeroPadding2D, BatchNormalization, ReLU,
    Activation, GlobalAveragePooling2D, GlobalMaxPooling2D, Dropout, Reshape, Flatten, Dense,
    Add)}
