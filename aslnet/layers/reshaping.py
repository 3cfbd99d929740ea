"""Layers that move values without arithmetic: ZeroPadding2D, Reshape,
Flatten."""
import numpy as np

from .layer import Layer, _core_output_shape, core_shape


class ZeroPadding2D(Layer):
    """Keras's ``ZeroPadding2D``: zero rows and columns around (h, w, c) inputs.

    :param padding: an int (all sides), (h, w) (symmetric) or
        ((top, bottom), (left, right)); default (1, 1)."""
    _base_name = "zero_padding2d"

    def __init__(self, padding=(1, 1), name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        if isinstance(padding, int):
            padding = ((padding, padding), (padding, padding))
        elif all(isinstance(p, int) for p in padding):
            padding = ((padding[0], padding[0]), (padding[1], padding[1]))
        self.padding = tuple(tuple(int(v) for v in p) for p in padding)
        if len(self.padding) != 2 or any(len(p) != 2 or min(p) < 0 for p in self.padding):
            raise ValueError(f"padding must be an int, (h, w) or ((top, bottom), (left, right)) "
                             f"of non-negative ints, got {padding!r}")

    def compute_output_shape(self, s):
        if len(s) != 3:
            raise ValueError(f"Layer '{self.name}' expects (h, w, c) inputs, got {s}")
        return _core_output_shape(self, s)

    def _core_ops(self):
        return [("zero_padding2d", dict(padding=self.padding))]

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


class Reshape(Layer):
    """Keras's ``Reshape``: the input reshaped to ``target_shape`` (without the
    batch; one entry may be -1).  Needs a known input size."""
    _base_name = "reshape"

    def __init__(self, target_shape, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.target_shape = tuple(int(d) for d in target_shape)

    def compute_output_shape(self, s):
        if None in tuple(s):
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}) needs a known input "
                             f"shape, got {tuple(s)} (a model of any input size): pool first "
                             "(GlobalAveragePooling2D) or give the Input a fixed size")
        shape = list(self.target_shape)
        if shape.count(-1) > 1:
            raise ValueError("Reshape: at most one -1")
        size = int(np.prod(s))
        if -1 in shape:
            known = -int(np.prod(shape))
            if known == 0 or size % known:
                raise ValueError(f"Reshape: cannot reshape {s} to {self.target_shape}")
            shape[shape.index(-1)] = size // known
        if int(np.prod(shape)) != size:
            raise ValueError(f"Reshape: total size of {s} ({size}) differs from "
                             f"{self.target_shape}")
        core_shape(shape)
        return tuple(shape)

    def _core_ops(self):
        return [("reshape", dict(target_shape=core_shape(self._out_shape)))]

    def get_config(self):
        return {**super().get_config(), "target_shape": self.target_shape}


class Flatten(Reshape):
    """Keras's ``Flatten``: each sample as one vector.  Needs a known input size."""
    _base_name = "flatten"

    def __init__(self, name=None, **kwargs):
        super().__init__((-1,), name=name, **kwargs)

    def get_config(self):
        cfg = super().get_config()
        del cfg["target_shape"]
        return cfg
