"""Merge layers (Keras's ``layers/merging/``): ``Add``, ``Multiply`` and
``Concatenate``, each called on a list of two tensors, e.g. MobileNetV2's
residual ``Add(name='block_2_add')([block_input, x])``, a gate
``Multiply()([features, Dense(1024, activation='sigmoid')(features)])`` or
``Concatenate()([features, Dense(64)(features)])``; and Keras's functions
``add``, ``multiply``, ``concatenate`` that make one and call it.

In the C core a merge is one op of the chain (csrc/add.c, csrc/merge.c):
y = f(the chain's previous output, the output of an earlier op, its
``source``).  So the model's layer order must put one of the two inputs just
before the merge (as Keras's order does for a residual block: the block's
last layer, then the add); the network (aslnet/engine/network.py) gives
``_core_ops`` the core index of the other input as ``source``, and whether it
is the merge's first input (``source_first``: the order of a concatenation).
"""
from .layer import Layer, core_shape

__all__ = ["Add", "Multiply", "Concatenate", "add", "multiply", "concatenate"]


class _Merge(Layer):
    """A layer of two inputs computed by one C op of kind ``_core_kind``."""

    _num_inputs = 2
    _core_kind = None
    _example = None            # the call shown in errors

    def __call__(self, inputs, training=None):
        kind = type(self).__name__
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            what = (f"{len(inputs)} tensors" if isinstance(inputs, (list, tuple))
                    else type(inputs).__name__)
            more = (" (aslnet merges two tensors at a time: nest the calls)"
                    if isinstance(inputs, (list, tuple)) and len(inputs) > 2 else "")
            raise ValueError(f"Layer '{self.name}' ({kind}) must be called on a list of 2 "
                             f"tensors, e.g. {self._example}; got {what}{more}")
        self._check_call(list(inputs), training)
        if inputs[0] is inputs[1]:
            raise NotImplementedError(f"Layer '{self.name}' ({kind}): merging a tensor with "
                                      "itself is not supported (aslnet's merges read the "
                                      "previous layer and an earlier one)")
        shapes = [tuple(t.shape[1:]) for t in inputs]
        return self._connect(list(inputs), shapes[0], self.compute_output_shape(shapes))

    @property
    def input_shape(self):
        """Keras's list of the two inputs' ``(None, ...)`` shapes."""
        if self._inbound is None:
            raise AttributeError(f"The layer {self.name} has never been called and thus has "
                                 "no defined input shape.")
        return [t.shape for t in self._inbound]

    def _core_ops(self, source=None, source_first=False):
        if source is None:
            raise RuntimeError(f"internal: layer '{self.name}' ({type(self).__name__}) needs "
                               "the core index of its second input")
        return [(self._core_kind, dict(source=int(source)))]


def _same_shape(layer, input_shapes):
    a, b = (tuple(s) for s in input_shapes)
    ok = len(a) == len(b) and all(x == y or x is None or y is None for x, y in zip(a, b))
    if not ok:
        raise ValueError(f"Layer '{layer.name}' ({type(layer).__name__}): inputs must have the "
                         f"same shape, got {a} and {b}")
    return tuple(x if x is not None else y for x, y in zip(a, b))


class Add(_Merge):
    """Keras's ``Add``: the sum of two tensors of the same shape."""

    _base_name = "add"
    _core_kind = "add"
    _example = "Add()([x, shortcut])"

    def compute_output_shape(self, input_shapes):
        return _same_shape(self, input_shapes)


class Multiply(_Merge):
    """Keras's ``Multiply``: the elementwise product of two tensors of the same
    shape (e.g. features times a sigmoid gate).  Keras 3 also broadcasts
    shapes with 1s (``(1, 1, c)`` times ``(h, w, c)``); aslnet does not."""

    _base_name = "multiply"
    _core_kind = "multiply"
    _example = "Multiply()([x, gate])"

    def compute_output_shape(self, input_shapes):
        return _same_shape(self, input_shapes)


class Concatenate(_Merge):
    """Keras's ``Concatenate(axis=-1)``: two tensors side by side along the
    channels (the last axis; images need the same height and width).  Other
    axes are refused."""

    _base_name = "concatenate"
    _core_kind = "concatenate"
    _example = "Concatenate()([x, y])"

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise TypeError(f"Concatenate: axis must be an int, got {axis!r}")
        self.axis = axis

    def compute_output_shape(self, input_shapes):
        a, b = (tuple(s) for s in input_shapes)
        if len(a) != len(b):
            raise ValueError(f"Layer '{self.name}' (Concatenate): inputs must have the same "
                             f"rank, got {a} and {b}")
        if self.axis not in (-1, len(a)):
            raise NotImplementedError(
                f"Layer '{self.name}' (Concatenate): axis={self.axis} is not supported; "
                f"aslnet concatenates along the last (channels) axis only: axis=-1 "
                f"(or {len(a)}) for inputs of shape {a}")
        core_shape(a)                                  # (h, w, c) or (features,)
        if any(x != y and x is not None and y is not None for x, y in zip(a[:-1], b[:-1])):
            raise ValueError(f"Layer '{self.name}' (Concatenate): inputs must match except "
                             f"along the concat axis, got {a} and {b}")
        rest = tuple(x if x is not None else y for x, y in zip(a[:-1], b[:-1]))
        return rest + (a[-1] + b[-1],)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}

    def _core_ops(self, source=None, source_first=False):
        ops = super()._core_ops(source)
        ops[0][1]["source_first"] = int(bool(source_first))
        return ops


def add(inputs, **kwargs):
    """Keras's functional ``add(inputs)``: ``Add(**kwargs)(inputs)``."""
    return Add(**kwargs)(inputs)


def multiply(inputs, **kwargs):
    """Keras's functional ``multiply(inputs)``: ``Multiply(**kwargs)(inputs)``."""
    return Multiply(**kwargs)(inputs)


def concatenate(inputs, axis=-1, **kwargs):
    """Keras's functional ``concatenate(inputs, axis=-1)``."""
    return Concatenate(axis=axis, **kwargs)(inputs)
