"""``Sequential``: Keras's stack of layers, a ``Model`` built one layer at
a time."""
from .. import backend
from ..layers import Input, InputLayer, KerasTensor, Layer
from .model import Model

__all__ = ["Sequential"]


class Sequential(Model):
    """Keras's ``Sequential``: ``Sequential([Input(shape), layer, ...])``,
    ``Sequential([Conv2D(..., input_shape=...), ...])``, or ``Sequential()``
    then ``add(layer)``.  As in Keras, ``layers`` leaves out the input."""

    def __init__(self, layers=None, name=None, **kwargs):
        if kwargs:
            raise TypeError(f"Sequential: unexpected arguments {sorted(kwargs)}")
        self._init_state(name or backend.unique_name("sequential"))
        for layer in list(layers or []):
            self.add(layer)

    @property
    def layers(self):
        return list(self._layers[1:])

    def _require_built(self):
        if self._input is None or len(self._layers) < 2:
            raise ValueError(
                f"Sequential model '{self.name}' has not been built: start it with "
                "Input(shape=...) or give its first layer input_shape=..., and add at least "
                "one layer")

    def add(self, layer):
        """Append ``layer`` (an Input(...) tensor or InputLayer may come first)."""
        if isinstance(layer, (KerasTensor, InputLayer)):
            tensor = layer if isinstance(layer, KerasTensor) else layer.output
            if not isinstance(tensor._layer, InputLayer):
                raise TypeError("Sequential.add takes layers, or an Input(...) first; got "
                                f"the output of layer '{tensor._layer.name}'")
            if self._input is not None:
                raise ValueError("An Input can only be the first entry of a Sequential")
            self._input, self._layers = tensor, [tensor._layer]
            return
        if not isinstance(layer, Layer):
            raise TypeError(_foreign_message(layer, "Sequential takes aslnet layers"))
        if self._input is None:
            shape = getattr(layer, "_input_shape_arg", None)
            if shape is None:
                raise ValueError(
                    f"Sequential model '{self.name}': the first layer needs an input shape "
                    "(aslnet builds a model as it is defined): start with Input(shape=...) "
                    "or pass input_shape=... to the first layer")
            self._input = Input(shape)
            self._layers = [self._input._layer]
        t = self._output if len(self._layers) > 1 else self._input
        out = layer(t)
        try:
            self._keep_optimizer_state()
            self._set_graph(self._input, out)
        except Exception:
            layer._output = layer._inbound = None     # leave the layer unused
            raise

    def _keep_optimizer_state(self):
        """Before the graph (and the C network) is rebuilt: keep the optimizer
        state of the layers that stay, as Keras does."""
        if self._net is not None and self.optimizer is not None:
            self._pending_opt = self.get_optimizer_state()

    def pop(self):
        """Remove the last layer."""
        if self._input is None or len(self._layers) < 2:
            raise TypeError("There are no layers in the model.")
        last = self._layers[-1]
        last._output = last._inbound = None
        self._keep_optimizer_state()
        if len(self._layers) == 2:
            self._layers, self._output = self._layers[:1], None
            self._net = None
        else:
            self._set_graph(self._input, self._layers[-2].output)
        return last


def _foreign_message(obj, what):
    """``what, got X``, with advice when X is a Keras/TensorFlow object."""
    module = type(obj).__module__ or ""
    msg = f"{what}, got {type(obj).__name__}"
    if module.split(".")[0] in ("keras", "tensorflow", "tf_keras", "torch"):
        msg += (f" from {module.split('.')[0]}: aslnet does not mix with other frameworks' "
                "objects; use aslnet.layers / aslnet.optimizers / aslnet.callbacks")
    return msg
