"""Pooling: MaxPooling2D, AveragePooling2D (windows; csrc/pool2d.c) and
GlobalAveragePooling2D, GlobalMaxPooling2D (csrc/pooling.c)."""
from .layer import Layer, _core_output_shape, _pair


class _Pooling2D(Layer):
    _kind = None

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.pool_size = _pair(pool_size, "pool_size")
        self.strides = self.pool_size if strides is None else _pair(strides, "strides")
        self.padding = str(padding).lower()
        if self.padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")

    def compute_output_shape(self, s):
        if len(s) != 3:
            raise ValueError(f"Layer '{self.name}' expects (h, w, c) inputs, got {s}")
        return _core_output_shape(self, s)

    def _core_ops(self):
        return [(self._kind, dict(kernel_size=self.pool_size, strides=self.strides,
                                  padding=self.padding))]

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides,
                "padding": self.padding}


class MaxPooling2D(_Pooling2D):
    """Keras's ``MaxPooling2D(pool_size=(2, 2), strides=None, padding="valid")``: the
    maximum of each window, per channel."""
    _base_name = "max_pooling2d"
    _kind = "max_pooling2d"


class AveragePooling2D(_Pooling2D):
    """Average over the window's real values ('same' padding does not count,
    as in Keras)."""
    _base_name = "average_pooling2d"
    _kind = "average_pooling2d"


class _GlobalPooling2D(Layer):
    _kind = None

    def __init__(self, keepdims=False, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.keepdims = bool(keepdims)

    def compute_output_shape(self, s):
        if len(s) != 3:
            raise ValueError(f"Layer '{self.name}' expects (h, w, c) inputs, got {s}")
        out = _core_output_shape(self, s)          # (1, 1, c)
        return out if self.keepdims else out[2:]

    def _core_ops(self):
        return [(self._kind, {})]

    def get_config(self):
        return {**super().get_config(), "keepdims": self.keepdims}


class GlobalAveragePooling2D(_GlobalPooling2D):
    """Keras's ``GlobalAveragePooling2D`` (also ``GlobalAvgPool2D``): the mean over
    height and width of (h, w, c) inputs.

    :param keepdims: keep the output as (1, 1, c) (default False: (c,))."""
    _base_name = "global_average_pooling2d"
    _kind = "global_average_pooling2d"


class GlobalMaxPooling2D(_GlobalPooling2D):
    """Keras's ``GlobalMaxPooling2D`` (also ``GlobalMaxPool2D``): the maximum over
    height and width of (h, w, c) inputs.

    :param keepdims: keep the output as (1, 1, c) (default False: (c,))."""
    _base_name = "global_max_pooling2d"
    _kind = "global_max_pooling2d"


# Keras's aliases
MaxPool2D, AvgPool2D = MaxPooling2D, AveragePooling2D
GlobalAvgPool2D, GlobalMaxPool2D = GlobalAveragePooling2D, GlobalMaxPooling2D
