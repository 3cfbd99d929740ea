"""``Sequential``: Keras's stack of layers, a ``Model`` built one layer at
a time."""
from .. import backend
from ..layers import Input, InputLayer, KerasTensor, Layer
from . import nesting
from .model import Model

__all__ = ["Sequential"]


class Sequential(Model):
    """Keras's ``Sequential``: ``Sequential([Input(shape), layer, ...])``,
    ``Sequential([Conv2D(..., input_shape=...), ...])``, or ``Sequential()``
    then ``add(layer)``.  As in Keras, ``layers`` leaves out the input.  A
    model may be one of the layers (nested: its input shape starts the
    Sequential when it comes first).  Without an input shape the layers wait
    for the first call (``Sequential([RandomFlip(), ...])(inputs)``: built
    on the tensor's shape, as Keras)."""

    def __init__(self, layers=None, name=None, **kwargs):
        if kwargs:
            raise TypeError(f"Sequential: unexpected arguments {sorted(kwargs)}")
        self._init_state(name or backend.unique_name("sequential"))
        self._deferred = []          # layers added before any input shape is known
        for layer in list(layers or []):
            self.add(layer)

    @property
    def layers(self):
        """The layers in order, without the input (as Keras)."""
        return list(self._keras_layers[1:]) if self._input is not None else \
            list(getattr(self, "_deferred", []))

    def _build_on(self, shape):
        """Build a deferred Sequential for per-sample input ``shape``."""
        layers, self._deferred = list(self._deferred), []
        self.add(Input(tuple(shape)))
        for layer in layers:
            self.add(layer)

    def __call__(self, x, training=None, mask=None):
        if self._input is None and getattr(self, "_deferred", None):
            self._build_on(tuple(x.shape[1:]))
        return super().__call__(x, training=training, mask=mask)

    def _require_built(self):
        if self._input is None or len(self._keras_layers) < 2:
            raise ValueError(
                f"Sequential model '{self.name}' has not been built: start it with "
                "Input(shape=...), give its first layer input_shape=... or call it on a "
                "tensor (e.g. model(Input(shape=...))), and add at least one layer")

    def add(self, layer):
        """Append ``layer`` (an Input(...) tensor or InputLayer may come first)."""
        if isinstance(layer, (KerasTensor, InputLayer)):
            tensor = layer if isinstance(layer, KerasTensor) else layer.output
            if not isinstance(tensor._layer, InputLayer):
                raise TypeError("Sequential.add takes layers, or an Input(...) first; got "
                                f"the output of layer '{tensor._layer.name}'")
            if self._input is not None:
                raise ValueError("An Input can only be the first entry of a Sequential")
            if getattr(self, "_deferred", None):
                raise ValueError("An Input can only be the first entry of a Sequential")
            self._input, self._layers = tensor, [tensor._layer]
            self._keras_layers = list(self._layers)
            return
        if not isinstance(layer, (Layer, Model)):
            raise TypeError(_foreign_message(layer, "Sequential takes aslnet layers"))
        if layer is self:
            raise ValueError(f"Sequential '{self.name}' cannot contain itself")
        if self._input is None:
            if isinstance(layer, Model):
                layer._require_built()
                shape = tuple(layer.input_shape[1:])
            else:
                shape = getattr(layer, "_input_shape_arg", None)
            if shape is None or getattr(self, "_deferred", None):
                self._deferred = getattr(self, "_deferred", []) + [layer]   # built when called
                return
            self._input = Input(shape)
            self._layers = self._keras_layers = [self._input._layer]
        t = self._output if len(self._keras_layers) > 1 else self._input
        out = layer(t)
        try:
            self._keep_optimizer_state()
            self._set_graph(self._input, out)
        except Exception:
            nesting.unuse(layer)                      # leave the layer unused
            raise

    def _keep_optimizer_state(self):
        """Before the graph (and the C network) is rebuilt: keep the optimizer
        state of the layers that stay, as Keras does."""
        if self._net is not None and self.optimizer is not None:
            self._pending_opt = self.get_optimizer_state()

    def pop(self):
        """Remove the last layer."""
        if self._input is None and getattr(self, "_deferred", None):
            return self._deferred.pop()
        if self._input is None or len(self._keras_layers) < 2:
            raise TypeError("There are no layers in the model.")
        last = self._keras_layers[-1]
        before = self._keras_layers[-2]
        nesting.unuse(last)
        self._keep_optimizer_state()
        if len(self._keras_layers) == 2:
            self._layers = self._keras_layers = self._keras_layers[:1]
            self._output, self._net = None, None
            self._reads, self._inference, self._tensor_alias, self._nodes = {}, set(), [], {}
        else:
            self._set_graph(self._input, self._nodes[before] if nesting.is_nested(before)
                            else before.output)
        return last


def _foreign_message(obj, what):
    """``what, got X``, with advice when X is a Keras/TensorFlow object."""
    module = type(obj).__module__ or ""
    msg = f"{what}, got {type(obj).__name__}"
    if module.split(".")[0] in ("keras", "tensorflow", "tf_keras", "torch"):
        msg += (f" from {module.split('.')[0]}: aslnet does not mix with other frameworks' "
                "objects; use aslnet.layers / aslnet.optimizers / aslnet.callbacks")
    return msg
