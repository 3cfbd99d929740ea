"""Convolutions: Conv2D, DepthwiseConv2D, SeparableConv2D (Keras layouts:
kernel HWIO, depthwise kernel (kh, kw, channels, multiplier), pointwise
kernel (1, 1, channels * multiplier, filters)).  Output shapes and TF's
'same' padding are the C core's rule (csrc/conv2d.c, asl_conv_geometry);
strides and dilation_rate as Keras (both > 1 together is refused, as
Keras refuses it)."""
import numpy as np

from .activations import _activation_name, _activation_ops
from .initializers import _conv_fans, _glorot_uniform, _init_value, _initializer
from .layer import Layer, _core_output_shape, _pair


class Conv2D(Layer):
    """Keras's ``Conv2D``: a 2-D convolution over (height, width, channels) inputs.

    :param filters: the number of output channels.
    :param kernel_size: an int or (height, width).
    :param strides: an int or (height, width) (default 1).
    :param padding: ``"valid"`` (default) or ``"same"``.
    :param dilation_rate: an int or (height, width) (default 1).
    :param activation: applied to the output (default None: linear).
    :param use_bias: whether the layer adds a bias (default True).
    :param kernel_initializer: default ``"glorot_uniform"``.
    :param bias_initializer: default ``"zeros"``."""
    _base_name = "conv2d"
    dilation_rate = (1, 1)      # (instances pickled before dilation existed)

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid",
                 dilation_rate=(1, 1), activation=None, use_bias=True,
                 kernel_initializer=None, bias_initializer=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self._kernel_init = _initializer(kernel_initializer, f"Layer '{self.name}'")
        self._bias_init = _initializer(bias_initializer, f"Layer '{self.name}'")
        if int(filters) < 1:
            raise ValueError(f"filters must be >= 1, got {filters}")
        self.filters = int(filters)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.strides = _pair(strides, "strides")
        self.dilation_rate = _pair(dilation_rate, "dilation_rate")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(f"Layer '{self.name}': strides > 1 with dilation_rate > 1 is not "
                             f"supported (Keras refuses it too): got strides={self.strides}, "
                             f"dilation_rate={self.dilation_rate}")
        self.padding = str(padding).lower()
        if self.padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
        self.activation = _activation_name(activation)
        self.use_bias = bool(use_bias)

    def _check_input(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"Layer '{self.name}' expects (h, w, c) inputs, got {input_shape}")

    def build(self, input_shape):
        self._check_input(input_shape)
        shape = (*self.kernel_size, input_shape[-1], self.filters)
        fans = _conv_fans(shape)
        self._add_weight("kernel", _init_value(self._kernel_init, shape, *fans,
                                               lambda: _glorot_uniform(shape, *fans)))
        if self.use_bias:
            self._add_weight("bias", _init_value(self._bias_init, (self.filters,), *fans,
                                                 lambda: np.zeros(self.filters, np.float32)))

    def compute_output_shape(self, input_shape):
        self._check_input(input_shape)
        return _core_output_shape(self, input_shape)

    def _geometry(self):
        return dict(kernel_size=self.kernel_size, strides=self.strides, padding=self.padding,
                    dilation_rate=self.dilation_rate, use_bias=self.use_bias)

    def _core_ops(self):
        act, after = _activation_ops(self.activation)
        return [("conv2d", dict(filters=self.filters, activation=act,
                                **self._geometry()))] + after

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size, "strides": self.strides,
                "padding": self.padding, "dilation_rate": self.dilation_rate,
                "activation": self.activation, "use_bias": self.use_bias}


class DepthwiseConv2D(Conv2D):
    """Keras's ``DepthwiseConv2D``: a per-channel 2-D convolution (MobileNet's).

    :param kernel_size: an int or (height, width).
    :param strides: an int or (height, width) (default 1).
    :param padding: ``"valid"`` (default) or ``"same"``.
    :param depth_multiplier: output channels per input channel (default 1).
    :param dilation_rate: an int or (height, width) (default 1).
    :param activation: applied to the output (default None: linear).
    :param use_bias: whether the layer adds a bias (default True).
    :param depthwise_initializer: default ``"glorot_uniform"``."""
    _base_name = "depthwise_conv2d"

    def __init__(self, kernel_size, strides=(1, 1), padding="valid", depth_multiplier=1,
                 dilation_rate=(1, 1), activation=None, use_bias=True,
                 depthwise_initializer=None, name=None, **kwargs):
        super().__init__(1, kernel_size, strides=strides, padding=padding,
                         dilation_rate=dilation_rate, activation=activation,
                         use_bias=use_bias, kernel_initializer=depthwise_initializer,
                         name=name, **kwargs)
        if int(depth_multiplier) < 1:
            raise ValueError(f"depth_multiplier must be >= 1, got {depth_multiplier}")
        self.depth_multiplier = int(depth_multiplier)

    def build(self, input_shape):
        self._check_input(input_shape)
        shape = (*self.kernel_size, input_shape[-1], self.depth_multiplier)
        fans = _conv_fans(shape)
        self._add_weight("depthwise_kernel", _init_value(
            self._kernel_init, shape, *fans, lambda: _glorot_uniform(shape, *fans)))
        if self.use_bias:
            n = input_shape[-1] * self.depth_multiplier
            self._add_weight("bias", _init_value(self._bias_init, (n,), *fans,
                                                 lambda: np.zeros(n, np.float32)))

    def _core_ops(self):
        act, after = _activation_ops(self.activation)
        return [("depthwise_conv2d", dict(depth_multiplier=self.depth_multiplier,
                                          activation=act, **self._geometry()))] + after

    def get_config(self):
        cfg = super().get_config()
        del cfg["filters"]
        return {**cfg, "depth_multiplier": self.depth_multiplier}


class SeparableConv2D(Conv2D):
    """Keras SeparableConv2D: a depthwise convolution (no bias) then a 1x1
    convolution to ``filters`` with bias and activation; weights
    ``depthwise_kernel``, ``pointwise_kernel``, ``bias`` (one C op,
    csrc/separable.c)."""

    _base_name = "separable_conv2d"

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid",
                 dilation_rate=(1, 1), depth_multiplier=1, activation=None, use_bias=True,
                 depthwise_initializer=None, pointwise_initializer=None,
                 bias_initializer=None, name=None, **kwargs):
        for key in ("pointwise_regularizer", "pointwise_constraint"):
            if kwargs.get(key) is not None:
                raise NotImplementedError(f"SeparableConv2D: {key} is not supported by aslnet")
            kwargs.pop(key, None)
        super().__init__(filters, kernel_size, strides=strides, padding=padding,
                         dilation_rate=dilation_rate, activation=activation,
                         use_bias=use_bias, kernel_initializer=depthwise_initializer,
                         bias_initializer=bias_initializer, name=name, **kwargs)
        self._pointwise_init = _initializer(pointwise_initializer, f"Layer '{self.name}'")
        if int(depth_multiplier) < 1:
            raise ValueError(f"depth_multiplier must be >= 1, got {depth_multiplier}")
        self.depth_multiplier = int(depth_multiplier)

    def build(self, input_shape):
        self._check_input(input_shape)
        mid = input_shape[-1] * self.depth_multiplier
        dshape = (*self.kernel_size, input_shape[-1], self.depth_multiplier)
        pshape = (1, 1, mid, self.filters)
        dfans, pfans = _conv_fans(dshape), _conv_fans(pshape)
        self._add_weight("depthwise_kernel", _init_value(
            self._kernel_init, dshape, *dfans, lambda: _glorot_uniform(dshape, *dfans)))
        self._add_weight("pointwise_kernel", _init_value(
            self._pointwise_init, pshape, *pfans, lambda: _glorot_uniform(pshape, *pfans)))
        if self.use_bias:
            self._add_weight("bias", _init_value(self._bias_init, (self.filters,), *pfans,
                                                 lambda: np.zeros(self.filters, np.float32)))

    def _core_ops(self):
        act, after = _activation_ops(self.activation)
        return [("separable_conv2d", dict(filters=self.filters,
                                          depth_multiplier=self.depth_multiplier,
                                          activation=act, **self._geometry()))] + after

    def get_config(self):
        return {**super().get_config(), "depth_multiplier": self.depth_multiplier}
