"""Activation layers (ReLU, Activation) and the activation names every
layer with an ``activation=`` argument accepts (the C core's set)."""
from .layer import Layer

_ACTIVATIONS = ("linear", "relu", "relu6", "softmax")


def _activation_name(a):
    if a is None:
        return "linear"
    name = getattr(a, "__name__", a)
    if name not in _ACTIVATIONS:
        raise ValueError(f"Unsupported activation {a!r}; aslnet supports {_ACTIVATIONS}")
    return name


class ReLU(Layer):
    _base_name = "re_lu"

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        if negative_slope or threshold or max_value not in (None, 6, 6.0):
            raise ValueError("aslnet's ReLU supports max_value None or 6 with no slope/threshold")
        self.max_value = None if max_value is None else float(max_value)

    def _core_ops(self):
        return [("activation", dict(activation="relu" if self.max_value is None else "relu6"))]

    def get_config(self):
        return {**super().get_config(), "max_value": self.max_value}


class Activation(Layer):
    _base_name = "activation"

    def __init__(self, activation, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.activation = _activation_name(activation)

    def _core_ops(self):
        return [("activation", dict(activation=self.activation))]

    def get_config(self):
        return {**super().get_config(), "activation": self.activation}
