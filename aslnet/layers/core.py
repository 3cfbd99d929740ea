"""Core layers: the model input (InputLayer / Input) and Dense."""
import numpy as np

from .. import backend
from .activations import _activation_name, _activation_ops
from .initializers import _glorot_uniform, _init_value, _initializer
from .layer import KerasTensor, Layer, core_shape


class InputLayer(Layer):
    """Keras's ``InputLayer``: the entry of a model (usually made by ``Input``).

    :param shape: the shape of one sample, without the batch (Keras 3's name;
        ``input_shape`` and ``batch_input_shape`` are taken as well).
    :param batch_size: optional fixed batch size.

    Inputs are converted to float32 (a ``dtype`` argument is ignored)."""
    _base_name = "input"

    def __init__(self, input_shape=None, batch_size=None, name=None, shape=None, **kwargs):
        kwargs.pop("dtype", None)          # inputs are converted to float32
        if "batch_input_shape" in kwargs:
            input_shape = tuple(kwargs.pop("batch_input_shape"))[1:]
        if input_shape is None:
            input_shape = shape            # Keras 3's name
        if input_shape is None:
            raise ValueError("InputLayer needs shape (or input_shape)")
        super().__init__(name=name or backend.unique_name("input", zero_based=False),
                         **kwargs)
        input_shape = tuple(int(d) if d is not None else None for d in input_shape)
        if any(d is not None and d < 1 for d in input_shape):
            raise ValueError(f"input shape dimensions must be >= 1 (or None), got {input_shape}")
        if None in input_shape and (len(input_shape) != 3 or input_shape[2] is None):
            raise ValueError(f"aslnet takes None (any size) for the height and width of an "
                             f"(h, w, c) input only, with a known channel count; got "
                             f"{input_shape}")
        core_shape(input_shape)
        self._in_shape = self._out_shape = input_shape
        self.built = True
        self._output = KerasTensor(input_shape, self, None)

    def get_config(self):
        return {"name": self.name, "batch_input_shape": (None,) + self._in_shape}


def Input(shape, name=None, **kwargs):
    """Keras's ``Input``: the symbolic input of a functional model."""
    return InputLayer(input_shape=shape, name=name, **kwargs).output


class Dense(Layer):
    """Keras Dense.  On (h, w, c) inputs it acts on the last axis, as in
    Keras (computed as a 1x1 convolution)."""

    _base_name = "dense"

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer=None,
                 bias_initializer=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self._kernel_init = _initializer(kernel_initializer, f"Layer '{self.name}'")
        self._bias_init = _initializer(bias_initializer, f"Layer '{self.name}'")
        if int(units) < 1:
            raise ValueError(f"units must be >= 1, got {units}")
        self.units = int(units)
        self.activation = _activation_name(activation)
        self.use_bias = bool(use_bias)

    def build(self, input_shape):
        fan_in = input_shape[-1]
        shape = (fan_in, self.units)
        self._add_weight("kernel", _init_value(self._kernel_init, shape, fan_in, self.units,
                                               lambda: _glorot_uniform(shape, fan_in,
                                                                       self.units)))
        if self.use_bias:
            self._add_weight("bias", _init_value(self._bias_init, (self.units,), fan_in,
                                                 self.units,
                                                 lambda: np.zeros(self.units, np.float32)))

    def compute_output_shape(self, s):
        if len(s) not in (1, 3):
            raise ValueError(f"Layer '{self.name}': unsupported input shape {s}")
        return (*s[:-1], self.units)

    def _core_ops(self):
        act, after = _activation_ops(self.activation)
        if len(self._in_shape) == 3 and self._in_shape[:2] != (1, 1):
            return [("conv2d", dict(filters=self.units, kernel_size=1, use_bias=self.use_bias,
                                    activation=act))] + after
        return [("dense", dict(units=self.units, use_bias=self.use_bias,
                               activation=act))] + after

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "use_bias": self.use_bias}
