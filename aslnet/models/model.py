"""``Model``: a Keras functional model over a chain of layers with residual
adds (``aslnet.layers.Add``).

The model holds the layer graph (``_keras_layers``, from its Input to its
output, in Keras's order, a nested model as one entry; ``_layers``, the same
flattened: what the C network computes, see :mod:`aslnet.models.nesting`),
the weights (in the layers), and its C network (``_net``, a
:class:`aslnet.engine.CoreNetwork`, built on first use); training and
inference come from :class:`aslnet.trainers.Trainer`, files from
:mod:`aslnet.saving`.
"""
import threading
import weakref

import numpy as np

from .. import backend, mixed_precision
from ..engine.network import CoreNetwork, check_graph
from ..layers import InputLayer, KerasTensor
from ..trainers.trainer import Trainer, serialized
from . import nesting

__all__ = ["Model"]


def _keras_order(inputs, outputs, nodes=None):
    """The layers that compute ``outputs`` from ``inputs``, in Keras's order
    (keras/src/ops/function.py ``map_graph``, as tf.keras 2's
    ``_map_graph_network``): by depth, the longest path to the output,
    deepest first; ties by the order a depth-first walk from the output
    (first input first) meets them.  A chain comes out input to output; a
    residual block as block input, the block's layers, then its Add.
    ``nodes``: filled with {nested model: its output tensor in this graph}."""
    index, post, state, met = {}, [], {}, {}
    stack = [(outputs, False)]
    while stack:                                   # iterative DFS (no recursion limit)
        t, done = stack.pop()
        layer = t._layer
        if met.setdefault(layer, t) is not t:
            raise NotImplementedError(
                f"Model '{layer.name}' is called twice in this model: aslnet nests a model "
                "once per model (its weights live at one place of the C network); use a "
                "copy for the second call (models.clone_model, then set_weights)")
        if done:
            state[layer] = 2
            post.append(t)
            continue
        if state.get(layer) == 2:
            continue
        if state.get(layer) == 1:
            raise ValueError(f"the graph has a cycle through layer '{layer.name}'")
        index.setdefault(layer, len(index))
        state[layer] = 1
        stack.append((t, True))
        if t is inputs:
            continue
        if not t._inputs:
            raise ValueError(f"outputs is not computed from inputs alone: it also reads the "
                             f"Input '{layer.name}' (aslnet models have exactly one input)")
        stack.extend((x, False) for x in reversed(t._inputs))
    depth = {}
    for t in reversed(post):                       # outputs first: depths pass down
        d = depth.setdefault(t._layer, 0)
        if t is not inputs:
            for x in t._inputs:
                depth[x._layer] = max(depth.get(x._layer, 0), d + 1)
    if nodes is not None:
        nodes.update((l, t) for l, t in met.items() if nesting.is_nested(l))
    return sorted(index, key=lambda layer: (-depth[layer], index[layer]))


class Model(Trainer):
    """``Model(inputs, outputs)`` over a graph of layers, as built with the
    Keras functional API (e.g. ``Model(mobile.input, Dense(10)(x))``): a chain,
    with residual ``Add`` layers."""

    def __init__(self, inputs=None, outputs=None, name=None, **kwargs):
        if kwargs:
            raise TypeError(f"Model: unexpected arguments {sorted(kwargs)}")
        if isinstance(inputs, (list, tuple)):
            if len(inputs) != 1:
                raise NotImplementedError("aslnet models have exactly one input")
            inputs = inputs[0]
        if isinstance(outputs, (list, tuple)):
            if len(outputs) != 1:
                raise NotImplementedError("aslnet models have exactly one output")
            outputs = outputs[0]
        if not isinstance(inputs, KerasTensor) or not isinstance(outputs, KerasTensor):
            raise TypeError("Model(inputs, outputs) takes the symbolic tensors of layers, "
                            "e.g. Input(shape=...) and a layer's output")
        self._init_state(name or backend.unique_name("model"))
        self._set_graph(inputs, outputs)

    def _set_graph(self, inputs, outputs):
        """The layers from ``inputs`` (an Input) to ``outputs``, in Keras's order."""
        if not isinstance(inputs._layer, InputLayer):
            raise ValueError(
                f"A model's input must be an Input(...) tensor; got the output of layer "
                f"'{inputs._layer.name}'.  aslnet cannot start a model inside another: to run "
                "the layers after it, build a model from the original input (or copy their "
                "weights into new layers called on a new Input)")
        nodes = {}
        chain = _keras_order(inputs, outputs, nodes)
        flat, reads, inference, tensors = nesting.flatten(chain, nodes)
        for layers in (chain, flat):
            names = [layer.name for layer in layers]
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"All layer names should be unique; the model has {dup} "
                                 "more than once (pass name=... to the layers; a nested "
                                 "model's layers count as the outer model's)")
        check_graph(flat[1:], reads)
        # _keras_layers: Keras's view (a nested model is one entry); _layers: the
        # flat layers the C network computes (aslnet.models.nesting)
        self._keras_layers, self._layers = chain, flat
        self._reads, self._inference, self._tensor_alias = reads, inference, tensors
        self._nodes = nodes                          # {nested model: its output tensor}
        self._input, self._output = inputs, outputs
        self._net = None                             # the CoreNetwork, built by _core()

    def _init_state(self, name):
        self.name = name
        self._lock = threading.RLock()
        self._trainable = True
        self._layers, self._input, self._output = [], None, None
        self._keras_layers, self._reads, self._inference, self._tensor_alias = [], {}, set(), []
        self._nodes = {}                             # {nested model: its output tensor}
        self._net = None
        self._dtype_policy = mixed_precision.global_policy()
        self._val_cache = None                       # (validation data, its trunk cache)
        self.optimizer = None
        self.loss = None
        self.compiled_metrics = []
        self.stop_training = False
        self.history = None
        # Bytes the frozen-trunk cache may use per data set (0: never cache),
        # and where its temporary files go (None: the system's temp dir).
        self.trunk_cache_bytes = 4 << 30
        self.trunk_cache_dir = None

    def _require_built(self):
        """A functional model is built when made (a Sequential may not be yet)."""

    # -- structure ------------------------------------------------------------
    _num_inputs = 1          # as a layer of another model (nesting)

    @property
    def layers(self):
        """The model's layers in order; a functional model's first is its
        InputLayer, a Sequential's is not (as in Keras).  A nested model is
        one entry (its own ``layers`` are the same objects)."""
        return list(self._keras_layers)

    def _nested_models(self):
        """The models used as layers of this one (not recursively)."""
        return [l for l in self._keras_layers if nesting.is_nested(l)]

    input = property(lambda self: self._input, doc="The model's input tensor (symbolic, as Keras's).")
    output = property(lambda self: self._output, doc="The model's output tensor.")
    inputs = property(lambda self: [self._input], doc="``[model.input]``: a list, as Keras.")
    outputs = property(lambda self: [self._output], doc="``[model.output]``: a list, as Keras.")
    input_shape = property(lambda self: self._input.shape,
                           doc="The input's shape, batch dimension ``None``: ``(None, 224, 224, 3)``.")
    output_shape = property(lambda self: self._output.shape,
                            doc="The output's shape, batch dimension ``None``: ``(None, 10)``.")

    @property
    def dtype_policy(self):
        """The model's :class:`aslnet.mixed_precision.DTypePolicy`; set it to
        ``"mixed_bfloat16"`` to compute every convolution in bfloat16 (float32
        weights and accumulation; see aslnet.mixed_precision)."""
        return self._dtype_policy

    @dtype_policy.setter
    def dtype_policy(self, policy):
        self._dtype_policy = mixed_precision._check_supported(
            mixed_precision.DTypePolicy(policy))

    compute_dtype = property(lambda self: self._dtype_policy.compute_dtype,
                             doc="The dtype convolutions compute in: ``'float32'``, or "
                                 "``'bfloat16'`` under ``mixed_bfloat16``.")
    variable_dtype = property(lambda self: self._dtype_policy.variable_dtype,
                              doc="The dtype weights are kept in: always ``'float32'``.")

    @property
    def trainable(self):
        """Whether the model trains; setting it sets every layer's flag."""
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        """As Keras: sets every layer's flag (``model.trainable = False``
        freezes the whole model; layers can be unfrozen one by one after)."""
        self._trainable = bool(value)
        for layer in self._keras_layers:       # (a nested model sets its own layers)
            layer.trainable = self._trainable

    def get_layer(self, name=None, index=None):
        """A layer by name, or by index in ``layers``.  A name is looked up
        in ``layers`` (a nested model by its name), then, unlike Keras, among
        the nested models' layers."""
        if index is not None:
            layers = self.layers
            if not -len(layers) <= index < len(layers):
                raise ValueError(f"Was asked to retrieve layer at index {index} but model "
                                 f"only has {len(layers)} layers.")
            return layers[index]
        for layer in self._keras_layers + self._layers:
            if layer.name == name:
                return layer
        raise ValueError(f"No such layer: {name}. Existing layers are: "
                         f"{[l.name for l in self._keras_layers]}")

    @property
    def weights(self):
        """Every layer's weights (``Variable`` objects), in layer order."""
        return [v for l in self._layers for v in l.weights]

    @property
    def trainable_weights(self):
        """The weights that training updates."""
        return [v for l in self._layers for v in l.trainable_weights]

    @property
    def non_trainable_weights(self):
        """The weights that training leaves alone (frozen layers, statistics)."""
        return [v for l in self._layers for v in l.non_trainable_weights]

    variables = property(lambda self: self.weights, doc="Keras's name of ``weights``.")
    trainable_variables = property(lambda self: self.trainable_weights,
                                   doc="Keras's name of ``trainable_weights``.")
    non_trainable_variables = property(lambda self: self.non_trainable_weights,
                                       doc="Keras's name of ``non_trainable_weights``.")

    def count_params(self):
        """The number of weight values."""
        return sum(l.count_params() for l in self._layers)

    def get_weights(self):
        """All weights, layer by layer, each layer's in Keras order."""
        return [w for l in self._layers for w in l.get_weights()]

    def set_weights(self, weights):
        """Set all weights from ``get_weights()``'s list."""
        weights = list(weights)
        expected = sum(len(l.weights) for l in self._layers)
        if len(weights) != expected:
            raise ValueError(f"Model '{self.name}' expects {expected} weight arrays, "
                             f"got {len(weights)}")
        for l in self._layers:
            k = len(l.weights)
            l.set_weights(weights[:k])
            weights = weights[k:]

    def freeze(self, upto):
        """Freeze layers before ``upto`` (an index, e.g. -23, or a layer name),
        unfreeze the rest: the tutorial's ``for layer in model.layers[:-23]:
        layer.trainable = False`` in one call."""
        layers = self.layers
        if upto is None:
            first = len(layers)
        elif isinstance(upto, str):
            first = layers.index(self.get_layer(upto))
        elif isinstance(upto, (int, np.integer)) and not isinstance(upto, bool):
            if not -len(layers) <= upto <= len(layers):
                raise ValueError(f"freeze(upto={upto}): the model has {len(layers)} "
                                 "layers")
            first = upto % len(layers) if upto < 0 else upto   # as in slicing
        else:
            raise TypeError(f"freeze(upto=...) takes a layer index, a layer name or None, "
                            f"got {upto!r}")
        for i, layer in enumerate(layers):
            layer.trainable = i >= first
        return self

    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False,
                show_trainable=False, layer_range=None):
        """tf.keras 2's table; a nested model is one row (its parameters
        counted), ``expand_nested`` is not supported."""
        self._require_built()
        if layer_range is not None:
            raise NotImplementedError("summary(layer_range=...) is not supported")
        if expand_nested:
            raise NotImplementedError("summary(expand_nested=True) is not supported: print "
                                      "the nested model's own summary()")
        from ..utils.summary import print_summary
        print_summary(self, line_length=line_length, positions=positions, print_fn=print_fn,
                      show_trainable=show_trainable)

    # -- the C network ----------------------------------------------------------
    def _core(self):
        """The CoreNetwork, built on first use, in step with the layers'
        trainable flags, their weights, the dtype policy and thread count."""
        self._require_built()
        if self._net is None:
            self._net = CoreNetwork(self._input.shape[1:], self._layers[1:],
                                    min_size=getattr(self, "min_input_size", None),
                                    reads=self._reads, inference=self._inference)
            if self.optimizer is not None:
                self._net.set_optimizer(self.optimizer)
        self._net.sync(self._dtype_policy.compute_dtype, getattr(self, "_int8_ranges", None))
        pending, self._pending_opt = getattr(self, "_pending_opt", None), None
        if pending is not None and self.optimizer is not None:   # a copy, or a rebuilt graph
            self.set_optimizer_state(pending, strict=False)
        return self._net

    def __call__(self, x, training=None, mask=None):
        if mask is not None:
            raise NotImplementedError("aslnet models take no mask")
        if isinstance(x, KerasTensor):        # nested in the model being built
            return nesting.call_symbolic(self, x, training)
        if training:
            raise NotImplementedError("model(x, training=True) is not supported: aslnet runs "
                                      "training-mode layers only inside fit/train_on_batch")
        return self.predict_on_batch(x)

    # A copy (copy.deepcopy, pickle) carries the layers, weights, compile
    # settings and optimizer state; its C network is built anew on first use.
    _UNCOPIED = ("_lock", "_net", "_val_cache")

    def __getstate__(self):
        with self._lock:
            state = {k: v for k, v in self.__dict__.items() if k not in self._UNCOPIED}
            if self._net is not None and self.optimizer is not None:
                state["_pending_opt"] = self.get_optimizer_state()
            return state

    def __setstate__(self, state):
        for old in ("_early", "_split_cache", "_net_state", "_core_index"):  # aslnet 0.1
            state.pop(old, None)
        self.__dict__.update(state)
        if "_keras_layers" not in state:               # before nested models
            self._keras_layers, self._reads, self._inference = list(self._layers), {}, set()
            self._tensor_alias, self._nodes = [], {}
        link = self.optimizer is not None and self.optimizer.__dict__.get("_model_ref")
        if self.optimizer is not None and (link is None or link() is None):
            self.optimizer._model_ref = weakref.ref(self)   # not copy.copy's shared one
        self._lock = threading.RLock()
        self._net, self._val_cache = None, None

    # -- optimizer state (for saving) -------------------------------------------
    @serialized
    def get_optimizer_state(self):
        """{'iterations': int, 'slots': {(layer name, weight index, slot): array}}
        (the C core's slot order, csrc/aslnet.h: Adam 0 = m, 1 = v; ...).  Only
        trainable weights that the optimizer has seen have slots."""
        if self.optimizer is None or (self._net is None and
                                      getattr(self, "_pending_opt", None) is None):
            return {"iterations": 0, "slots": {}}
        network, slots = self._core(), {}      # (applies a pending state first)
        net = network.net
        for layer in self._layers[1:]:
            if not layer.weights or not layer.trainable:
                continue
            i = network.holder(layer)
            for j, var in enumerate(layer.weights):
                for k in range(net.num_slots):
                    if var.trainable:
                        value = net.slot(i, j, k)
                        if value is not None:
                            slots[(layer.name, j, k)] = value.reshape(var.shape)
        return {"iterations": net.iterations, "slots": slots}

    @serialized
    def set_optimizer_state(self, state, strict=True):
        """Restore ``get_optimizer_state()``'s output.  ``strict=False`` skips
        the slots of layers that are gone, frozen or of another shape (the
        state of a model whose layers changed since)."""
        if self.optimizer is None:
            raise RuntimeError("compile the model before restoring optimizer state")
        network = self._core()
        net = network.net
        names = {layer.name: layer for layer in self._layers}
        for (name, j, k), value in state["slots"].items():
            if not strict and name not in names:
                continue
            layer = names[name] if name in names else self.get_layer(name)
            i = network.holder(layer)
            info = net.params(i)[j]
            value = np.asarray(value, np.float32)
            if not strict and (value.size != int(np.prod(info["shape"])) or
                               not layer.trainable or k >= net.num_slots or
                               net.slot(i, j, k) is None):
                continue
            net.set_slot(i, j, k, value.reshape(info["shape"]))
        net.iterations = int(state["iterations"])

    # -- persistence ------------------------------------------------------------
    def save(self, filepath, overwrite=True, include_optimizer=True, save_format=None):
        """Keras 3's ``.keras`` zip archive for a ``.keras`` path, else an
        HDF5 file as tf.keras writes it (``save_format`` None, 'h5' or 'keras'
        agreeing with the suffix)."""
        keras = str(getattr(filepath, "filename", filepath)).lower().endswith(".keras")
        if save_format not in (None, "h5", "keras") or (
                save_format is not None and (save_format == "keras") != keras):
            raise NotImplementedError(f"save_format={save_format!r} for {filepath!s}: aslnet "
                                      "writes Keras 3's archive to '.keras' paths and HDF5 "
                                      "to others (leave save_format out)")
        from ..distribution import is_chief
        if not is_chief():                 # data-parallel: rank 0 writes the file
            return
        from ..saving import save_model
        save_model(self, filepath, overwrite=overwrite, include_optimizer=include_optimizer)

    def export(self, filepath, format="tf_saved_model", verbose=None, input_signature=None, **kwargs):
        """Keras 3's ``export``; aslnet writes ``format="onnx"`` (an ONNX
        graph of the model for inference, see ``aslnet.export.export_onnx``)
        and refuses Keras's other formats."""
        from ..export import export_model
        export_model(self, filepath, format=format, verbose=verbose,
                     input_signature=input_signature, **kwargs)

    def save_weights(self, filepath, overwrite=True):
        """The weights alone, in Keras's h5 weights layout (Keras 3's for a
        ``.weights.h5`` path)."""
        from ..distribution import is_chief
        if not is_chief():                 # data-parallel: rank 0 writes the file
            return
        from ..saving import save_weights
        save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath, by_name=False, skip_mismatch=False):
        """Keras's ``load_weights``: by layer order, or ``by_name`` (then
        ``skip_mismatch`` skips layers whose weight shapes differ)."""
        from ..saving import load_weights
        load_weights(self, filepath, by_name=by_name, skip_mismatch=skip_mismatch)

    def get_config(self):
        """Keras's model config (tf.keras 2's Functional/Sequential form)."""
        from ..saving.serialization import model_to_config
        self._require_built()
        return model_to_config(self)["config"]

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """A new model (fresh weights) from ``get_config()``'s output."""
        from ..saving.serialization import model_from_config, model_kind
        return model_from_config({"class_name": model_kind(cls), "config": config},
                                 custom_objects)

    def to_json(self, **kwargs):
        """The architecture as Keras's JSON (``models.model_from_json`` reads it)."""
        import json
        from ..saving.serialization import (BACKEND, KERAS_VERSION, json_default,
                                            model_to_config)
        self._require_built()
        return json.dumps({**model_to_config(self), "keras_version": KERAS_VERSION,
                           "backend": BACKEND}, default=json_default, **kwargs)
