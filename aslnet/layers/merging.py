"""Merge layers (Keras's ``layers/merging/``): ``Add``, called on a list of
two tensors of the same shape, e.g. MobileNetV2's residual
``Add(name='block_2_add')([block_input, x])``.

In the C core an add is one op of the chain (csrc/add.c): y = the chain's
previous output + the output of an earlier op, its ``source``.  So the
model's layer order must put one of the two inputs just before the add (as
Keras's order does for a residual block: the block's last layer, then the
add); the network (aslnet/engine/network.py) gives ``_core_ops`` the core
index of the other input as ``source``.
"""
from .layer import Layer


class Add(Layer):
    """Keras's ``Add``: the sum of two tensors of the same shape."""

    _base_name = "add"
    _num_inputs = 2

    def __call__(self, inputs, training=None):
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            what = (f"{len(inputs)} tensors" if isinstance(inputs, (list, tuple))
                    else type(inputs).__name__)
            raise ValueError(f"Layer '{self.name}' (Add) must be called on a list of 2 "
                             f"tensors, e.g. Add()([x, shortcut]); got {what}")
        self._check_call(list(inputs), training)
        if inputs[0] is inputs[1]:
            raise NotImplementedError(f"Layer '{self.name}': adding a tensor to itself is "
                                      "not supported (use x * 2 as a layer of its own)")
        shapes = [tuple(t.shape[1:]) for t in inputs]
        return self._connect(list(inputs), shapes[0], self.compute_output_shape(shapes))

    def compute_output_shape(self, input_shapes):
        a, b = (tuple(s) for s in input_shapes)
        ok = len(a) == len(b) and all(x == y or x is None or y is None for x, y in zip(a, b))
        if not ok:
            raise ValueError(f"Layer '{self.name}' (Add): inputs must have the same shape, "
                             f"got {a} and {b}")
        return tuple(x if x is not None else y for x, y in zip(a, b))

    @property
    def input_shape(self):
        """Keras's list of the two inputs' ``(None, ...)`` shapes."""
        if self._inbound is None:
            raise AttributeError(f"The layer {self.name} has never been called and thus has "
                                 "no defined input shape.")
        return [t.shape for t in self._inbound]

    def _core_ops(self, source=None):
        if source is None:
            raise RuntimeError(f"internal: layer '{self.name}' (Add) needs the core index of "
                               "its second input")
        return [("add", dict(source=int(source)))]
