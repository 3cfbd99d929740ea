"""Global pooling: GlobalAveragePooling2D, GlobalMaxPooling2D."""
from .layer import Layer, _core_output_shape


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
    _base_name = "global_average_pooling2d"
    _kind = "global_average_pooling2d"


class GlobalMaxPooling2D(_GlobalPooling2D):
    _base_name = "global_max_pooling2d"
    _kind = "global_max_pooling2d"
