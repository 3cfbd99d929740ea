"""A model used as a layer (Keras's nested models): ``base(x, training=False)``
in a functional model, ``Sequential([base, GlobalAveragePooling2D(), Dense(n)])``.

Calling a model on a symbolic tensor records one node in the outer graph: a
``KerasTensor`` whose layer is the nested model (``model.layers`` of the outer
model lists it once, as Keras).  The outer model's C network computes the
*flattened* graph: the nested model's own layers (the same objects: weights,
trainable flags and weight versions are shared), its Input rewired to the
tensor it was called on.  The flattening is three things (``flatten``):

* the flat layers, outer Input first, every nested model replaced by its
  own flat layers after its Input;
* ``reads``: {layer the graph names -> flat layer whose output it is}: a
  nested model's InputLayer -> the layer computing the tensor it was called
  on; a nested model -> the last flat layer of it (its output);
* ``inference``: the flat layers of a model called with ``training=False``
  (their C ops get ``inference=True``: they run in inference mode even in
  a training forward, as Keras 3's call argument: a trainable batch norm
  uses and keeps its moving statistics, and still trains gamma and beta;
  dropout and random augmentation pass their input through).

A nested model is called once per outer graph (a second call would need the
same weights at two places of the C network: refused), but may be nested in
several outer models (each computes with the same weight arrays), and keeps
working on its own (``base.predict``; its own C network reads them too).  A
node is its output tensor: ``_layer`` the nested model, ``_inbound`` the
tensor it was called on, ``_training`` the call's training argument.
"""
from ..layers import InputLayer, KerasTensor

__all__ = ["call_symbolic", "flatten", "resolve", "is_nested", "unuse", "tensor_resolver"]


def is_nested(obj):
    """Whether ``obj`` (an entry of a graph's layers) is a model used as a layer
    (a Model: it has a graph of its own; no import of .model, which imports this)."""
    return "_keras_layers" in getattr(obj, "__dict__", {})


def call_symbolic(model, x, training=None):
    """``model(x)`` on a symbolic tensor: the node of ``model`` in the graph
    being built (a KerasTensor of the model's output shape)."""
    if training:
        raise NotImplementedError(
            f"model '{model.name}'(x, training=True): aslnet runs a nested model's layers in "
            "training mode inside fit when they are trainable; leave training out (or pass "
            "training=False to keep its batch norm in inference mode)")
    if isinstance(x, (list, tuple)):
        raise NotImplementedError(f"model '{model.name}' takes one tensor (aslnet models have "
                                  "exactly one input)")
    model._require_built()
    want, got = tuple(model.input_shape[1:]), tuple(x.shape[1:])
    if len(want) != len(got) or any(w is not None and w != g for w, g in zip(want, got)):
        raise ValueError(f"Model '{model.name}' expects input shape {model.input_shape}, "
                         f"called on a tensor of shape {x.shape}: resize the images first "
                         "(e.g. layers.Resizing) or build the base for that input_shape")
    out = KerasTensor(tuple(model.output_shape[1:]), model, x)
    out._training = training
    return out


def unuse(layer):
    """Forget ``layer``'s call in a graph that was not kept (a refused add; a
    nested model's calls are the graphs' own: nothing to forget)."""
    if not is_nested(layer):
        layer._output = layer._inbound = None


def resolve(layer, reads):
    """The flat layer whose output ``layer`` (as a graph names it) is."""
    seen = 0
    while layer in reads:
        layer = reads[layer]
        seen += 1
        if seen > 10000:
            raise RuntimeError("internal: a cycle in the nested models' reads")
    return layer


def flatten(chain, nodes):
    """(flat layers, reads, inference, tensor aliases) of a graph whose
    layers, in Keras's order, are ``chain`` (its Input first), ``nodes``
    {nested model: its output tensor in this graph}; see the module
    docstring.  ``tensor aliases``: {id of a tensor the flat layers read or
    the model outputs -> the tensor of the flat graph computing it}, as a
    list of pairs (ids change in a copy: ``resolve_tensor`` indexes them)."""
    flat, reads, inference, tensors = [chain[0]], {}, set(), []
    for entry in chain[1:]:
        if not is_nested(entry):
            flat.append(entry)
            continue
        out = nodes[entry]
        x, training = out._inbound, out._training
        inner = entry._layers
        reads[inner[0]] = x._layer
        reads.update(entry._reads)
        reads[entry] = inner[-1]
        tensors += entry._tensor_alias
        tensors += [(entry._input, x), (out, entry._output)]
        flat.extend(inner[1:])
        inference.update(entry._inference)
        if training is False:
            inference.update(inner[1:])
    for layer in flat[1:]:
        if isinstance(layer, InputLayer):
            raise ValueError(f"internal: InputLayer '{layer.name}' inside the flat graph")
    return flat, reads, inference, tensors


def tensor_resolver(model):
    """A function: a tensor of ``model``'s graph or of a nested model's ->
    the tensor of the flat graph that computes it."""
    alias = {id(a): b for a, b in model._tensor_alias}

    def resolve_tensor(t):
        while id(t) in alias:
            t = alias[id(t)]
        return t
    return resolve_tensor
