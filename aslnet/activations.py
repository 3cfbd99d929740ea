"""Keras's ``activations``: the functions (on NumPy arrays) whose names a
layer's ``activation=`` takes; which of them the C core computes is
``aslnet.layers``' rule (a layer refuses one it lacks, naming what it has)."""
import numpy as np

__all__ = ["linear", "relu", "relu6", "softmax", "sigmoid", "tanh", "swish", "silu", "get",
           "serialize", "deserialize"]


def linear(x):
    return np.asarray(x)


def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    x = np.asarray(x)
    y = np.where(x > threshold, x, negative_slope * (x - threshold))
    return y if max_value is None else np.minimum(y, max_value)


def relu6(x):
    return np.clip(np.asarray(x), 0, 6)


def softmax(x, axis=-1):
    x = np.asarray(x)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def sigmoid(x):
    return 0.5 * (1 + np.tanh(0.5 * np.asarray(x)))


def tanh(x):
    return np.tanh(np.asarray(x))


def swish(x):
    x = np.asarray(x)
    return x * sigmoid(x)


silu = swish
_FUNCTIONS = {f.__name__: f for f in (linear, relu, relu6, softmax, sigmoid, tanh, swish)}
_FUNCTIONS["silu"] = swish


def get(identifier):
    """A name or an activation function -> the function (None -> linear)."""
    if identifier is None:
        return linear
    if callable(identifier):
        return identifier
    if isinstance(identifier, str) and identifier in _FUNCTIONS:
        return _FUNCTIONS[identifier]
    raise ValueError(f"Unsupported activation {identifier!r}; aslnet.activations has "
                     f"{sorted(_FUNCTIONS)} (see README's Keras API table)")


def serialize(activation):
    return getattr(activation, "__name__", activation)


def deserialize(name):
    return get(name)


def __getattr__(name):
    raise AttributeError(f"aslnet.activations has no {name}: aslnet has {sorted(_FUNCTIONS)} "
                         "(see README's Keras API table)")
