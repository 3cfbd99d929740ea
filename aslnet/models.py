"""Keras-shaped functional ``Model``: a chain of layers computed by one C
network (``aslnet._core.Net``), one C call per batch."""
import functools
import os
import shutil
import tempfile
import threading
import warnings
import weakref

import numpy as np

from . import _core, backend, mixed_precision
from . import optimizers as optimizers_mod
from .layers import Dropout, InputLayer, KerasTensor, Layer, Reshape, core_shape

__all__ = ["Model", "Sequential", "load_model", "model_from_json", "clone_model",
           "recalibrate_batch_norm"]

_LOSSES = ("categorical_crossentropy", "sparse_categorical_crossentropy")
_RAN_OUT = ("Your input ran out of data; interrupting training. Make sure that your dataset "
            "or generator can generate at least `steps_per_epoch * epochs` batches.")
_CCE_EPS = 1e-7


def _loss_name(loss):
    """The loss's name; a Keras loss object whose options change the
    objective (from_logits, label_smoothing, another reduction) is refused
    rather than silently trained with the default."""
    cfg = loss.get_config() if hasattr(loss, "get_config") and not isinstance(loss, type) \
        else {}
    odd = {k: v for k, v in cfg.items()
           if (k == "from_logits" and v) or (k == "label_smoothing" and v)
           or (k == "axis" and v not in (-1, None))
           or (k == "ignore_class" and v is not None)
           or (k == "reduction" and v not in ("auto", "sum_over_batch_size", None))}
    if odd:
        raise NotImplementedError(f"Loss {type(loss).__name__} with {odd}: aslnet computes "
                                  "cross-entropy on the softmax output, averaged over the "
                                  "batch, without these options")
    name = getattr(loss, "__name__", None) or getattr(loss, "name", None) or loss
    name = {"CategoricalCrossentropy": "categorical_crossentropy",
            "SparseCategoricalCrossentropy": "sparse_categorical_crossentropy"}.get(
                type(loss).__name__, name)
    if name not in _LOSSES:
        raise ValueError(f"Unsupported loss {loss!r}; aslnet supports {_LOSSES}")
    return name


_ACCURACIES = ("accuracy", "acc", "categorical_accuracy", "sparse_categorical_accuracy")


def _metric_name(metric):
    """The log name of an accuracy metric given by name or as a Keras metric
    object (aslnet computes the one accuracy: argmax of the output against
    the label, whatever the label's encoding)."""
    name = metric if isinstance(metric, str) else getattr(metric, "name", None)
    if name not in _ACCURACIES:
        raise ValueError(f"Unsupported metric {metric!r}; aslnet has 'accuracy' (also "
                         f"named {', '.join(_ACCURACIES[1:])})")
    return name


def categorical_crossentropy(y_true, y_pred, from_softmax=True):
    """Keras's categorical cross-entropy per sample.  For a softmax output
    Keras uses the logits (no clipping): -log(p) of the float32 softmax,
    floored at the smallest normal float; otherwise the outputs are
    divided by their sum, then clipped to [1e-7, 1 - 1e-7]."""
    if from_softmax:
        p = np.maximum(y_pred, np.finfo(np.float32).tiny)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            p = y_pred / np.sum(y_pred, axis=-1, keepdims=True)
        p = np.clip(p, _CCE_EPS, 1 - _CCE_EPS)
    return -np.sum(y_true * np.log(p), axis=-1)


def _serialized(method):
    """Run ``method`` holding the model's lock: the C network computes one
    call at a time, so calls from several threads (a web server, a predict
    during fit) queue instead of failing."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return wrapper


class _TrunkCache:
    """Outputs of the frozen trunk (the layers below the first trainable
    one), per sample of one data set.  Frozen layers run in inference mode,
    so they compute a fixed function of the input: computing it once and
    reusing it in later epochs gives exactly the results of recomputing.
    Only used when the data tells sample identities and is not augmented.

    The features live in an unnamed temporary file (in ``directory``, else
    the system's temp dir) when the disk has room: the OS page cache keeps
    them in RAM while RAM is free, and can drop them under memory pressure
    instead of the process growing by the cache's size.  Where no file can
    be had (no room, no ``os.preadv``), they live in memory.  A write error
    (disk full) turns caching off for the rest of the fit: the features are
    then recomputed, with the same results."""

    _DISK_MARGIN = 512 << 20   # leave this much of the disk free

    def __init__(self, n, shape, directory=None):
        self.shape = tuple(int(d) for d in shape)
        self.sample_bytes = int(np.prod(self.shape)) * 4
        self.filled = np.zeros(n, bool)
        self._mem = self._file = None
        self._broken = False
        if hasattr(os, "preadv"):
            try:
                free = shutil.disk_usage(directory or tempfile.gettempdir()).free
                if free - n * self.sample_bytes >= self._DISK_MARGIN:
                    self._file = tempfile.TemporaryFile(dir=directory)
            except OSError:
                self._file = None
        if self._file is None:
            self._mem = np.empty((n,) + self.shape, np.float32)

    def has(self, ids):
        return not self._broken and bool(self.filled[ids].all())

    def lookup(self, ids):
        if not self.has(ids):
            return None
        if self._mem is not None:
            return self._mem[ids]
        out = np.empty((len(ids),) + self.shape, np.float32)
        fd = self._file.fileno()
        for i, j in enumerate(ids):
            got = os.preadv(fd, [memoryview(out[i]).cast("B")], int(j) * self.sample_bytes)
            if got != self.sample_bytes:
                raise OSError(f"frozen-trunk cache: short read ({got} of "
                              f"{self.sample_bytes} bytes)")
        return out

    def store(self, ids, feats):
        if self._broken:
            return
        if self._mem is not None:
            self._mem[ids] = feats
        else:
            feats = np.ascontiguousarray(feats, np.float32)
            try:
                fd = self._file.fileno()
                for i, j in enumerate(ids):
                    data = memoryview(feats[i]).cast("B")
                    if os.pwrite(fd, data, int(j) * self.sample_bytes) != len(data):
                        raise OSError("short write")
            except OSError as e:
                warnings.warn(f"frozen-trunk cache off for the rest of this fit ({e}): "
                              "features are recomputed")
                self.close()
                self._broken = True
                return
        self.filled[ids] = True

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None
        self._mem = None
        self.filled[:] = False


class Model:
    """``Model(inputs, outputs)`` over a chain of layers, as built with the
    Keras functional API (e.g. ``Model(mobile.input, Dense(10)(x))``)."""

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
        """The chain of layers from ``inputs`` (an Input) to ``outputs``."""
        if not isinstance(inputs._layer, InputLayer):
            raise ValueError(
                f"A model's input must be an Input(...) tensor; got the output of layer "
                f"'{inputs._layer.name}'.  aslnet cannot start a model inside another: to run "
                "the layers after it, build a model from the original input (or copy their "
                "weights into new layers called on a new Input)")
        chain, t = [], outputs
        while t is not None and t is not inputs:
            chain.append(t._layer)
            t = t._inbound
        if t is None:
            raise ValueError("outputs is not computed from inputs")
        chain.append(inputs._layer)
        names = [layer.name for layer in chain]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"All layer names should be unique; the model has {dup} "
                             "more than once (pass name=... to the layers)")
        self._layers = chain[::-1]
        self._input, self._output = inputs, outputs
        self._net = None                             # the C network (built by _core)
        self._net_state = {}                         # what was last sent to it
        self._early = None                           # (net, state, layers): _early_core
        self.__dict__.pop("_split_cache", None)      # held the old network alive

    def _init_state(self, name):
        self.name = name
        self._lock = threading.RLock()
        self._trainable = True
        self._layers, self._input, self._output = [], None, None
        self._net, self._net_state, self._early = None, {}, None
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

    # -- structure ------------------------------------------------------
    @property
    def layers(self):
        """The model's layers in order; a functional model's first is its
        InputLayer, a Sequential's is not (as in Keras)."""
        return list(self._layers)

    input = property(lambda self: self._input)
    output = property(lambda self: self._output)
    inputs = property(lambda self: [self._input])
    outputs = property(lambda self: [self._output])
    input_shape = property(lambda self: self._input.shape)
    output_shape = property(lambda self: self._output.shape)

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

    compute_dtype = property(lambda self: self._dtype_policy.compute_dtype)
    variable_dtype = property(lambda self: self._dtype_policy.variable_dtype)

    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        """As Keras: sets every layer's flag (``model.trainable = False``
        freezes the whole model; layers can be unfrozen one by one after)."""
        self._trainable = bool(value)
        for layer in self._layers:
            layer.trainable = self._trainable

    def get_layer(self, name=None, index=None):
        if index is not None:
            layers = self.layers
            if not -len(layers) <= index < len(layers):
                raise ValueError(f"Was asked to retrieve layer at index {index} but model "
                                 f"only has {len(layers)} layers.")
            return layers[index]
        for layer in self._layers:
            if layer.name == name:
                return layer
        raise ValueError(f"No such layer: {name}. Existing layers are: "
                         f"{[l.name for l in self._layers]}")

    @property
    def weights(self):
        return [v for l in self._layers for v in l.weights]

    @property
    def trainable_weights(self):
        return [v for l in self._layers for v in l.trainable_weights]

    @property
    def non_trainable_weights(self):
        return [v for l in self._layers for v in l.non_trainable_weights]

    def count_params(self):
        return sum(l.count_params() for l in self._layers)

    def get_weights(self):
        """All weights, layer by layer, each layer's in Keras order."""
        return [w for l in self._layers for w in l.get_weights()]

    def set_weights(self, weights):
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
        """tf.keras 2's table (``expand_nested``: aslnet models nest nothing)."""
        self._require_built()
        if layer_range is not None:
            raise NotImplementedError("summary(layer_range=...) is not supported")
        from .utils.summary import print_summary
        print_summary(self, line_length=line_length, positions=positions, print_fn=print_fn,
                      show_trainable=show_trainable)

    # -- the C network ------------------------------------------------------
    def _build_net(self, layers):
        """A C network over ``layers`` (after the input), computing with the
        layers' own weight arrays (bound, not copied); (net, core index of
        each layer's ops)."""
        net = _core.Net(core_shape(self._input.shape[1:]))
        index = {}
        for layer in layers:
            idx = [net.add(kind, **cfg) for kind, cfg in layer._core_ops()]
            index[layer.name] = idx
            holders = [i for i in idx if net.params(i)]
            if layer.weights:
                if len(holders) != 1:
                    raise RuntimeError(f"internal: layer '{layer.name}' maps to "
                                       f"{len(holders)} parametrised core ops")
                for j, (var, info) in enumerate(zip(layer.weights, net.params(holders[0]))):
                    net.bind_param(holders[0], j, var._value.reshape(info["shape"]))
        return net, index

    def _sync(self, net, state, layers):
        """Bring ``net`` up to date with the layers' trainable flags, weights
        changed from elsewhere, the dtype policy and the thread count;
        ``state`` holds what was last sent."""
        flags = tuple(layer.trainable for layer in layers)
        if flags != state.get("flags"):                     # sync only on change
            for layer, flag in zip(layers, flags):
                for i in self._core_index[layer.name]:
                    net.set_trainable(i, flag)
            state["flags"] = flags
        if state.get("version") != backend.weights_version():
            net.weights_changed()
            state["version"] = backend.weights_version()
        if self._dtype_policy.compute_dtype != state.get("dtype"):
            net.set_compute_dtype(self._dtype_policy.compute_dtype)
            state["dtype"] = self._dtype_policy.compute_dtype
        if backend._num_threads != state.get("threads"):
            net.set_num_threads(backend._num_threads)
            state["threads"] = backend._num_threads

    def _core(self):
        """The C network, built on first use; synchronised with the layers'
        trainable flags and with weights changed from Python."""
        self._require_built()
        if self._net is None:
            self._net, self._core_index = self._build_net(self._layers[1:])
            self._net_state = {"version": backend.weights_version()}
            self._early = None
            if self.optimizer is not None:
                self._net.set_optimizer(self.optimizer._core_name,
                                        **self.optimizer._core_config())
        self._sync(self._net, self._net_state, self._layers[1:])
        pending, self._pending_opt = getattr(self, "_pending_opt", None), None
        if pending is not None and self.optimizer is not None:   # a copy, or a rebuilt graph
            self.set_optimizer_state(pending, strict=False)
        return self._net

    # A copy (copy.deepcopy, pickle) carries the layers, weights, compile
    # settings and optimizer state; its C network is built anew on first use.
    _UNCOPIED = ("_lock", "_net", "_early", "_split_cache", "_val_cache", "_net_state")

    def __getstate__(self):
        with self._lock:
            state = {k: v for k, v in self.__dict__.items() if k not in self._UNCOPIED}
            if self._net is not None and self.optimizer is not None:
                state["_pending_opt"] = self.get_optimizer_state()
            return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        link = self.optimizer is not None and self.optimizer.__dict__.get("_model_ref")
        if self.optimizer is not None and (link is None or link() is None):
            self.optimizer._model_ref = weakref.ref(self)   # not copy.copy's shared one
        self._lock = threading.RLock()
        self._net, self._net_state, self._early, self._val_cache = None, {}, None, None

    # Batched inference runs the first layers, whose activations are large,
    # one image at a time (they then stay in the CPU's caches: the memory-
    # bound depthwise convolutions run up to 2.5x faster), and the rest on
    # the whole batch (the late 1x1 convolutions are faster on many images).
    # The switch is at the first fused-group boundary (after an activation)
    # below which a per-image output was larger than _MICRO_BYTES and from
    # which it is not.  The per-image part is a second C network over the
    # same weight arrays; the results are those of the whole-batch network
    # (each image is computed by the same kernels in the same order).  Not
    # under mixed_bfloat16 (half the bytes; measured no faster).
    _MICRO_BYTES = 512 << 10

    def _micro_split(self):
        """Core index where batched inference switches to the whole batch,
        or None (no large activations: everything on the whole batch)."""
        from .layers import Activation, ReLU
        if self._net is None:
            self._core()
        if getattr(self, "_split_cache", (None,))[0] is not self._net:
            big, split = False, None
            for k, layer in enumerate(self._layers[1:-1], start=1):
                size = 4 * int(np.prod(layer._out_shape))
                big = big or size > self._MICRO_BYTES
                if big and size <= self._MICRO_BYTES and isinstance(layer, (ReLU, Activation)):
                    split = self._core_index[self._layers[k + 1].name][0]
                    break
            self._split_cache = (self._net, split)
        return self._split_cache[1]

    def _early_core(self, split):
        """The second C network: the layers before core op ``split``."""
        if self._early is None:
            layers = [l for l in self._layers[1:] if self._core_index[l.name][0] < split]
            net, _ = self._build_net(layers)
            self._early = (net, {"version": backend.weights_version()}, layers)
        net, state, layers = self._early
        self._sync(net, state, layers)
        return net

    def _inference_forward(self, x, stop=-1):
        """``net.forward(x, training=False, start=0, stop=stop)``, the layers
        before the micro-batch split run one image at a time."""
        net = self._net
        split = self._micro_split()
        end = net.num_layers if stop < 0 else stop
        if split is None or len(x) < 2 or self._dtype_policy.compute_dtype != "float32":
            return net.forward(x, training=False, start=0, stop=stop)
        k = min(split, end)
        early = self._early_core(split)
        h = np.concatenate([early.forward(x[i:i + 1], training=False, stop=k)
                            for i in range(len(x))])
        return h if k == end else net.forward(h, training=False, start=k, stop=stop)

    def _after_update(self):
        """Our C net changed weights in place: other models sharing these
        layers (and our per-image network) must refresh their cached
        layouts; this one need not."""
        self._net_state["version"] = backend.weights_changed()

    def _single_input(self, x):
        """Keras's {input name: array} for a one-input model: the array."""
        if isinstance(x, dict):
            name = self._input._layer.name
            if len(x) != 1 or next(iter(x)) not in (name, self._layers[0].name):
                raise ValueError(f"Model '{self.name}' has one input, '{name}'; got a dict "
                                 f"with keys {sorted(map(str, x))}")
            return next(iter(x.values()))
        return x

    def _to_input(self, x):
        x = np.asarray(self._single_input(x), dtype=np.float32)
        expected = self._input.shape[1:]
        if x.shape[1:] != expected:
            if x.shape == expected:
                raise ValueError(f"Model '{self.name}' expects a batch of shape "
                                 f"(batch, {', '.join(map(str, expected))}); got one sample "
                                 f"{x.shape} — add a batch axis (x[None]; a tf.data.Dataset: "
                                 ".batch(n))")
            raise ValueError(f"Model '{self.name}' expects input shape "
                             f"(None, {', '.join(map(str, expected))}), got {x.shape}")
        return np.ascontiguousarray(x.reshape((x.shape[0],) + core_shape(expected)))

    def _to_target(self, y, n):
        y = np.asarray(y)
        classes = self._output.shape[-1]
        if self.loss == "sparse_categorical_crossentropy":
            if y.size != n:
                hint = ("; these look one-hot: use loss='categorical_crossentropy'"
                        if y.shape == (n, classes) else "")
                raise ValueError(f"sparse_categorical_crossentropy takes one integer label "
                                 f"per sample ({n} here), got targets of shape {y.shape}{hint}")
            if y.size and not np.all(np.equal(np.mod(y, 1), 0)):
                raise ValueError("sparse_categorical_crossentropy takes integer labels")
            y = y.reshape(-1).astype(np.int64)
            if y.size and (y.min() < 0 or y.max() >= classes):
                raise ValueError(f"labels must be in [0, {classes}), got {y.min()}..{y.max()}")
            y = np.eye(classes, dtype=np.float32)[y]
        if y.shape != (n, classes):
            hint = ("; these look like integer labels: use "
                    "loss='sparse_categorical_crossentropy' (or aslnet.utils.to_categorical)"
                    if y.size == n else "")
            raise ValueError(f"targets must have shape ({n}, {classes}), got {y.shape}{hint}")
        return np.ascontiguousarray(y, dtype=np.float32).reshape(n, 1, 1, classes)

    # -- frozen-trunk cache -------------------------------------------------
    def _trunk_start(self):
        """Core index of the first op of the first trainable layer with
        weights, if the layers below it can be cached (no dropout), else 0."""
        for k, layer in enumerate(self._layers[1:], start=1):
            if isinstance(layer, Dropout) and layer.rate > 0:
                return 0
            if layer.trainable and layer.trainable_weights:
                return self._core_index[layer.name][0] if k > 1 else 0
        return self._core_index[self._layers[-1].name][0]

    def _trunk_cache(self, data, start):
        """A _TrunkCache for ``data`` if caching is possible and fits."""
        from .utils.data import has_augmentation, num_samples
        n = num_samples(data)
        if start == 0 or n is None or has_augmentation(data):
            return None
        shape = self._net.output_shape(start - 1)
        if n * int(np.prod(shape)) * 4 > self.trunk_cache_bytes:
            return None
        return _TrunkCache(n, shape, self.trunk_cache_dir)

    def _features(self, net, xb, ids, cache, start):
        """The trunk's output for a batch, from the cache or computed (and
        stored): returns (input of core op `start`, start).  fit always
        splits at the trunk boundary, cache or not, so caching changes no
        result (a fused inference group never straddles the boundary)."""
        if start == 0:
            return xb, 0
        feats = cache.lookup(ids) if cache is not None and ids is not None else None
        if feats is None:
            if xb is None:
                raise RuntimeError("frozen-trunk cache: a batch was skipped but is not cached")
            feats = self._inference_forward(xb, stop=start)
            if cache is not None and ids is not None:
                cache.store(ids, feats)
        return feats, start

    # -- compile / train ----------------------------------------------------
    _COMPILE_DEFAULTS = {"loss_weights": None, "weighted_metrics": None,
                         "run_eagerly": (False, None), "steps_per_execution": (1, None),
                         "jit_compile": (False, None, "auto", True),
                         "auto_scale_loss": (True, False, None)}

    @_serialized
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, **kwargs):
        for key, value in kwargs.items():
            if key not in self._COMPILE_DEFAULTS:
                raise TypeError(f"compile() got an unexpected keyword argument {key!r}")
            ok = self._COMPILE_DEFAULTS[key]
            if value not in (ok if isinstance(ok, tuple) else (ok,)):
                raise NotImplementedError(f"compile({key}={value!r}) is not supported "
                                          "by aslnet")
        if optimizer == "rmsprop":
            raise ValueError("aslnet has no RMSprop yet; use 'adam' or 'sgd'")
        new = optimizers_mod.get(optimizer)
        loss = _loss_name(loss)
        metrics = [_metric_name(m) for m in
                   ([metrics] if isinstance(metrics, str) else list(metrics or []))]
        if new is not self.optimizer:
            self._pending_opt = None         # a copy's restored state was the old one's
        if self._net is not None:
            self._net.set_optimizer(new._core_name, **new._core_config())
            if new is not self.optimizer:
                # As Keras: a new optimizer starts from zero (its moments and
                # iteration count); compiling again with the same one keeps them.
                self._net.reset_optimizer()
        self.optimizer, self.loss, self.compiled_metrics = new, loss, metrics
        new._model_ref = weakref.ref(self)

    def _softmax_output(self):
        """Whether the output is a softmax (past trailing reshapes/dropout)."""
        k = len(self._layers) - 1
        while k > 0 and isinstance(self._layers[k], (Reshape, Dropout)):
            k -= 1
        return getattr(self._layers[k], "activation", None) == "softmax"

    def _require_compiled(self):
        if self.loss is None:
            raise RuntimeError("You must compile your model before training/testing. "
                               "Use `model.compile(optimizer, loss)`.")

    def _require_trainable_output(self):
        """Training runs the cross-entropy fused with a softmax output."""
        self._require_compiled()
        shape = self._output.shape[1:]
        if not (len(shape) == 1 or tuple(shape[:2]) == (1, 1)):
            raise ValueError(
                f"aslnet trains classifiers: the output must be (None, classes), got "
                f"{self._output.shape} (add GlobalAveragePooling2D or Flatten before the "
                "Dense)")
        if not self._softmax_output():
            last = self._layers[-1]
            raise ValueError(
                f"aslnet trains with the cross-entropy of a softmax output, but the output "
                f"layer '{last.name}' has activation "
                f"{getattr(last, 'activation', None) or 'none'!r}: give it "
                "activation='softmax' (from_logits=True is not supported)")

    def _logs(self, loss_sum, correct, n, prefix=""):
        logs = {prefix + "loss": loss_sum / max(n, 1)}
        for m in self.compiled_metrics:
            logs[prefix + m] = correct / max(n, 1)
        return logs

    def _sync_lr(self, net):
        net.set_learning_rate(self.optimizer.learning_rate)

    @_serialized
    def train_on_batch(self, x, y, sample_weight=None, class_weight=None, return_dict=False):
        self._require_trainable_output()
        net = self._core()
        self._sync_lr(net)
        xb = self._to_input(x)
        yb = self._to_target(y, xb.shape[0])
        w = self._sample_weights(yb, sample_weight, class_weight)
        feats, s0 = self._features(net, xb, None, None, self._trunk_start())
        loss, pred = net.train_step(feats, yb if w is None else yb * w, start=s0)
        self._after_update()
        logs = self._logs(loss * len(xb), self._correct(yb, pred), len(xb))
        return logs if return_dict else (logs["loss"] if len(logs) == 1 else list(logs.values()))

    @staticmethod
    def _sample_weights(yb, sample_weight, class_weight):
        """Per-sample loss weights, shaped to scale the (n, 1, 1, classes)
        targets, or None.  Scaling the targets weights both the loss and its
        gradient: with the softmax output fused with the cross-entropy, the
        gradient is (p * sum(w y) - w y) / n = w (p - y) / n, and the loss
        sum(w_i l_i) / n, Keras's reduction ("sum_over_batch_size")."""
        if sample_weight is not None and class_weight is not None:
            raise ValueError("You cannot pass both class_weight and sample_weight")
        n = len(yb)
        if class_weight is not None:
            if not isinstance(class_weight, dict):
                raise ValueError(f"class_weight must be a dict {{class index: weight}}, got "
                                 f"{type(class_weight).__name__}")
            labels = np.argmax(yb.reshape(n, -1), axis=1)
            w = np.array([class_weight.get(int(c), 1.0) for c in labels], np.float32)
        elif sample_weight is not None:
            w = np.asarray(sample_weight, np.float32).reshape(-1)
            if len(w) != n:
                raise ValueError(f"sample_weight has {len(w)} values for a batch of {n}")
        else:
            return None
        if not np.all(np.isfinite(w)):
            raise ValueError("sample weights must be finite")
        return w.reshape(n, 1, 1, 1)

    @staticmethod
    def _correct(y, pred):
        n = len(y)
        return int(np.sum(np.argmax(y.reshape(n, -1), 1) == np.argmax(pred.reshape(n, -1), 1)))

    @staticmethod
    def _unpack_validation(validation_data):
        """(x, y) from Keras's forms: a tuple or list (x, y[, sample_weight]),
        or one data object (a Sequence or iterable yielding (x, y))."""
        if isinstance(validation_data, (tuple, list)):
            if len(validation_data) not in (2, 3):
                raise ValueError("validation_data must be (x_val, y_val), (x_val, y_val, "
                                 "val_sample_weight) or a data object; got a sequence of "
                                 f"{len(validation_data)} items")
            weights = validation_data[2] if len(validation_data) == 3 else None
            return validation_data[0], validation_data[1], weights
        return validation_data, None, None

    @staticmethod
    def _split_validation(x, y, sample_weight, validation_split):
        """Keras's validation_split: the last fraction of the arrays, taken
        before any shuffling."""
        from .utils.data import _is_array
        if not 0.0 < float(validation_split) < 1.0:
            raise ValueError(f"validation_split must be in (0, 1), got {validation_split}")
        if not _is_array(x):
            raise ValueError("validation_split is only supported for array inputs (a "
                             "generator/Sequence: use ImageDataGenerator(validation_split=)"
                             " with subset=, or validation_data)")
        x, y = np.asarray(x), np.asarray(y)
        split = int(len(x) * (1.0 - float(validation_split)))
        if split == 0 or split == len(x):
            raise ValueError(f"validation_split={validation_split} leaves no training or "
                             f"no validation samples out of {len(x)}")
        val_weight = None
        if sample_weight is not None:        # Keras splits the weights too
            sample_weight = np.asarray(sample_weight)
            sample_weight, val_weight = sample_weight[:split], sample_weight[split:]
        return x[:split], y[:split], sample_weight, (x[split:], y[split:], val_weight)

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None, validation_freq=1, max_queue_size=10, workers=1,
            use_multiprocessing=False):
        """Keras's ``fit``.  Each epoch runs ``steps_per_epoch`` batches (else
        one pass over the data); a following epoch goes on where the last one
        stopped.  Calls from other threads wait until it returns.
        (``max_queue_size``, ``workers``, ``use_multiprocessing``: tf.keras's
        data-loading options, accepted and not needed: aslnet decodes each
        image once per fit and overlaps loading with compute itself.)"""
        with self._lock:
            return self._fit(self._single_input(x), y, batch_size, epochs, verbose, callbacks,
                             validation_split, validation_data, shuffle, class_weight,
                             sample_weight, initial_epoch, steps_per_epoch,
                             validation_steps, validation_batch_size, validation_freq)

    def _fit(self, x, y, batch_size, epochs, verbose, callbacks, validation_split,
             validation_data, shuffle, class_weight, sample_weight, initial_epoch,
             steps_per_epoch, validation_steps, validation_batch_size, validation_freq):
        from .callbacks import CallbackList, History
        from .utils.data import DataStream, num_steps
        self._require_trainable_output()
        if class_weight is not None and sample_weight is not None:
            raise ValueError("You cannot pass both class_weight and sample_weight")
        if validation_split:
            if validation_data is not None:
                validation_split = 0.0          # Keras: validation_data wins
            else:
                x, y, sample_weight, validation_data = self._split_validation(
                    x, y, sample_weight, validation_split)
        if isinstance(validation_freq, bool) or not isinstance(validation_freq, int) \
                or validation_freq < 1:
            raise ValueError(f"validation_freq must be a positive integer, got "
                             f"{validation_freq!r}")
        verbose = 1 if verbose == "auto" else int(verbose)
        steps = num_steps(x, batch_size, steps_per_epoch)
        net = self._core()
        start = self._trunk_start()
        cache, self._val_cache = None, None
        try:
            cache = self._trunk_cache(x, start)
            stream = DataStream(x, y, batch_size, shuffle, cached=cache,
                                sample_weight=sample_weight)
            cbs = CallbackList(callbacks, add_history=True, add_progbar=verbose != 0,
                               model=self, verbose=verbose, epochs=epochs, steps=steps)
            history = next(c for c in cbs if isinstance(c, History))
            if validation_data is not None:
                vx, vy, vw = self._unpack_validation(validation_data)
                self._val_cache = (vx, self._trunk_cache(vx, start))
            self._epochs(net, start, cache, stream, cbs, epochs, initial_epoch,
                         steps_per_epoch, class_weight, validation_data is not None and
                         (vx, vy, validation_batch_size or batch_size, validation_steps,
                          validation_freq, vw))
        finally:                    # also after an exception or Ctrl-C
            for c in (cache, self._val_cache and self._val_cache[1]):
                if c is not None:
                    c.close()
            self._val_cache = None
        self.history = history
        return history

    def _epochs(self, net, start, cache, stream, cbs, epochs, initial_epoch, steps_per_epoch,
                class_weight, validation):
        """fit's loop; ``validation``: (x, y, batch_size, steps, freq, sample_weight)
        or False."""
        self.stop_training = False
        cbs.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            cbs.on_epoch_begin(epoch)
            loss_sum, correct, seen = 0.0, 0, 0
            for step, (xb, yb, ids, sw) in enumerate(stream.epoch(steps_per_epoch)):
                cbs.on_train_batch_begin(step)
                self._sync_lr(net)
                xb = None if xb is None else self._to_input(xb)   # None: cached
                yb = self._to_target(yb, len(yb) if xb is None else len(xb))
                w = self._sample_weights(yb, sw, class_weight)
                feats, s0 = self._features(net, xb, ids, cache, start)
                loss, pred = net.train_step(feats, yb if w is None else yb * w, start=s0)
                self._after_update()
                loss_sum += loss * len(yb)
                correct += self._correct(yb, pred)
                seen += len(yb)
                cbs.on_train_batch_end(step, self._logs(loss_sum, correct, seen))
                if self.stop_training:
                    break
            if seen == 0:
                warnings.warn(_RAN_OUT, stacklevel=4)
                break
            logs = self._logs(loss_sum, correct, seen)
            if validation and (epoch + 1) % validation[4] == 0:
                vx, vy, vbatch, vsteps, _, vw = validation
                val = self.evaluate(vx, vy, batch_size=vbatch, steps=vsteps, verbose=0,
                                    return_dict=True, callbacks=cbs, sample_weight=vw)
                logs.update({"val_" + k: v for k, v in val.items()})
            cbs.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
            if steps_per_epoch is not None and seen and stream.exhausted:
                warnings.warn(_RAN_OUT, stacklevel=4)
                break
        cbs.on_train_end()

    def fine_tune(self, x, validation_data=None, head_epochs=20, epochs=8,
                  unfreeze_from="conv_dw_7", head_learning_rate=1e-3, learning_rate=2e-5,
                  batch_size=None, verbose="auto", callbacks=None):
        """aslnet's fine-tuning recipe for a pretrained backbone with a new
        head (e.g. ``load_pretrained('mobilenet', num_classes=10)``):

        1. warm up the head alone (Adam ``head_learning_rate``) for
           ``head_epochs``: the frozen backbone's pooled features are
           computed once and cached, so these epochs cost almost nothing;
        2. unfreeze the convolutions from layer ``unfreeze_from`` on, with
           batch normalization kept frozen (inference mode: the pretrained
           statistics stay valid), and train for ``epochs`` at
           ``learning_rate``, continuing phase 1's Adam (its moments and step
           count); the frozen trunk below is cached again.  With
           ``validation_data``, the weights of the epoch with the best
           validation loss are kept.

        Returns the History of phase 2 (phase 1's is ``self.head_history``).
        """
        from .callbacks import EarlyStopping
        from .layers import BatchNormalization
        from .optimizers import Adam
        with_weights = [l for l in self._layers if l.weights]
        if not with_weights:
            raise ValueError("fine_tune needs a model with weights")
        head = with_weights[-1]
        first = self._layers.index(self.get_layer(unfreeze_from))
        for layer in self._layers:
            layer.trainable = layer is head
        adam = Adam(head_learning_rate)
        self.compile(optimizer=adam, loss="categorical_crossentropy", metrics=["accuracy"])
        self.head_history = self.fit(x, validation_data=validation_data, epochs=head_epochs,
                                     batch_size=batch_size, verbose=verbose)
        for i, layer in enumerate(self._layers):
            layer.trainable = i >= first and not isinstance(layer, BatchNormalization)
        # Phase 2 goes on with phase 1's Adam (its step count and the head's moments; the
        # unfrozen layers start theirs), at the lower rate: compiling with the same
        # optimizer keeps its state.  A fresh Adam here measured 4 pp worse (split seed 0).
        adam.learning_rate = learning_rate
        self.compile(optimizer=adam, loss="categorical_crossentropy", metrics=["accuracy"])
        cbs = list(callbacks or [])
        if validation_data is not None:
            cbs.append(EarlyStopping(monitor="val_loss", patience=epochs,
                                     restore_best_weights=True))
        return self.fit(x, validation_data=validation_data, epochs=epochs,
                        batch_size=batch_size, verbose=verbose, callbacks=cbs)

    # -- inference ----------------------------------------------------------
    def _forward_batches(self, x, y, batch_size, steps, with_targets, on_begin):
        """Yields (n, targets, outputs) per batch; ``on_begin(i)`` is called
        before batch i is computed (the callbacks' *_batch_begin)."""
        from .utils.data import batches
        net = self._core()
        cache, start = None, 0
        val_cache = self._val_cache
        if val_cache is not None and val_cache[0] is x:          # validation inside fit
            cache, start = val_cache[1], self._trunk_start()
        for i, (xb, yb, ids) in enumerate(batches(x, y, batch_size, False, steps,
                                                  with_targets=with_targets, cached=cache)):
            on_begin(i)
            xb = None if xb is None else self._to_input(xb)   # None: cached
            feats, s0 = self._features(net, xb, ids, cache, start)
            out = self._inference_forward(feats) if s0 == 0 else \
                net.forward(feats, training=False, start=s0)
            yield len(feats), yb, out.reshape((len(feats),) + self._output.shape[1:])

    @_serialized
    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None,
                max_queue_size=10, workers=1, use_multiprocessing=False):
        from .callbacks import CallbackList
        from .utils.data import num_steps
        x = self._single_input(x)
        n_steps = num_steps(x, batch_size, steps)
        bar = _progbar(n_steps, verbose)
        cbs = CallbackList(callbacks, model=self, verbose=0, epochs=1, steps=n_steps)
        cbs.on_predict_begin()
        outs = []
        for i, (_, _, out) in enumerate(self._forward_batches(
                x, None, batch_size, n_steps, False, cbs.on_predict_batch_begin)):
            outs.append(out)
            cbs.on_predict_batch_end(i, {"outputs": out})
            if bar:
                bar.update(i + 1)
        cbs.on_predict_end()
        if not outs:
            return np.zeros((0,) + self._output.shape[1:], np.float32)
        return np.concatenate(outs)

    @_serialized
    def predict_on_batch(self, x):
        xb = self._to_input(x)
        self._core()
        return self._inference_forward(xb).reshape((len(xb),) + self._output.shape[1:])

    def __call__(self, x, training=None, mask=None):
        if mask is not None:
            raise NotImplementedError("aslnet models take no mask")
        if isinstance(x, KerasTensor):
            raise NotImplementedError(
                f"Calling model '{self.name}' on a symbolic tensor (nesting a model in "
                "another) is not supported: aslnet models are chains.  Build the new model "
                "from this one's layers instead, e.g. Model(base.input, "
                "Dense(10)(base.output)); freeze the base with base.trainable = False "
                "(frozen batch norm runs in inference mode, as training=False does)")
        if training:
            raise NotImplementedError("model(x, training=True) is not supported: aslnet runs "
                                      "training-mode layers only inside fit/train_on_batch")
        return self.predict_on_batch(x)

    @_serialized
    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None,
                 steps=None, return_dict=False, callbacks=None, max_queue_size=10, workers=1,
                 use_multiprocessing=False):
        """Keras's ``evaluate``; ``sample_weight`` (arrays only) weights each sample's
        loss as in fit (the accuracy stays unweighted, as Keras's compiled metrics)."""
        from .callbacks import CallbackList
        from .utils.data import _is_array, num_samples, num_steps
        self._require_compiled()
        x = self._single_input(x)
        if sample_weight is not None:
            if not _is_array(x):
                raise ValueError("sample_weight must be None when x is a generator/Sequence/"
                                 "dataset (it yields (x, y, sample_weight))")
            sample_weight = np.asarray(sample_weight, np.float32).reshape(-1)
            if len(sample_weight) != num_samples(x):
                raise ValueError(f"sample_weight has {len(sample_weight)} values for "
                                 f"{num_samples(x)} samples")
            if not np.all(np.isfinite(sample_weight)):
                raise ValueError("sample weights must be finite")
        n_steps = num_steps(x, batch_size, steps)
        bar = _progbar(n_steps, verbose, ["loss", *self.compiled_metrics])  # running means
        if isinstance(callbacks, CallbackList):     # fit's own list (validation)
            cbs = callbacks
        else:
            cbs = CallbackList(callbacks, model=self, verbose=0, epochs=1, steps=n_steps)
        cbs.on_test_begin()
        loss_sum, correct, seen = 0.0, 0, 0
        from_softmax = self._softmax_output()
        for i, (n, yb, out) in enumerate(self._forward_batches(
                x, y, batch_size, n_steps, True, cbs.on_test_batch_begin)):
            yb = self._to_target(yb, n).reshape(n, -1)
            p = out.reshape(n, -1)
            losses = categorical_crossentropy(yb, p, from_softmax)
            if sample_weight is not None:
                losses = losses * sample_weight[seen:seen + n]
            loss_sum += float(np.sum(losses))
            correct += self._correct(yb, p)
            seen += n
            logs = self._logs(loss_sum, correct, seen)
            cbs.on_test_batch_end(i, logs)
            if bar:
                bar.update(i + 1, list(logs.items()))
        logs = self._logs(loss_sum, correct, seen)
        cbs.on_test_end(logs)
        if return_dict:
            return logs
        return logs["loss"] if len(logs) == 1 else list(logs.values())

    # tf.keras 1's generator methods, which older versions of the tutorial call
    def fit_generator(self, generator, steps_per_epoch=None, epochs=1, verbose=1,
                      callbacks=None, validation_data=None, validation_steps=None,
                      validation_freq=1, class_weight=None, max_queue_size=10, workers=1,
                      use_multiprocessing=False, shuffle=True, initial_epoch=0):
        """Deprecated as in tf.keras: ``fit`` takes generators."""
        warnings.warn("`Model.fit_generator` is deprecated: use `Model.fit`, which supports "
                      "generators.", DeprecationWarning, stacklevel=2)
        return self.fit(generator, steps_per_epoch=steps_per_epoch, epochs=epochs,
                        verbose=verbose, callbacks=callbacks, validation_data=validation_data,
                        validation_steps=validation_steps, validation_freq=validation_freq,
                        class_weight=class_weight, shuffle=shuffle,
                        initial_epoch=initial_epoch)

    def evaluate_generator(self, generator, steps=None, callbacks=None, max_queue_size=10,
                           workers=1, use_multiprocessing=False, verbose=0):
        """Deprecated as in tf.keras: ``evaluate`` takes generators."""
        warnings.warn("`Model.evaluate_generator` is deprecated: use `Model.evaluate`, which "
                      "supports generators.", DeprecationWarning, stacklevel=2)
        return self.evaluate(generator, steps=steps, callbacks=callbacks, verbose=verbose)

    def predict_generator(self, generator, steps=None, callbacks=None, max_queue_size=10,
                          workers=1, use_multiprocessing=False, verbose=0):
        """Deprecated as in tf.keras: ``predict`` takes generators."""
        warnings.warn("`Model.predict_generator` is deprecated: use `Model.predict`, which "
                      "supports generators.", DeprecationWarning, stacklevel=2)
        return self.predict(generator, steps=steps, callbacks=callbacks, verbose=verbose)

    def test_on_batch(self, x, y, sample_weight=None, return_dict=False):
        return self.evaluate(x, y, batch_size=len(x), verbose=0, sample_weight=sample_weight,
                             return_dict=return_dict)

    # -- optimizer state (for saving) ----------------------------------------
    def _param_holder(self, layer):
        """Core index of the op that holds ``layer``'s parameters."""
        net = self._core()
        return next(i for i in self._core_index[layer.name] if net.params(i))

    @_serialized
    def get_optimizer_state(self):
        """{'iterations': int, 'slots': {(layer name, weight index, slot): array}}
        (Adam: slots 0 = m, 1 = v; SGD with momentum: 0 = velocity).  Only
        trainable weights that the optimizer has seen have slots."""
        if self.optimizer is None or (self._net is None and
                                      getattr(self, "_pending_opt", None) is None):
            return {"iterations": 0, "slots": {}}
        net, slots = self._core(), {}      # (applies a pending state first)
        for layer in self._layers:
            if not layer.weights or not layer.trainable:
                continue
            i = self._param_holder(layer)
            for j, var in enumerate(layer.weights):
                for k in range(2):
                    if var.trainable:
                        value = net.slot(i, j, k)
                        if value is not None:
                            slots[(layer.name, j, k)] = value.reshape(var.shape)
        return {"iterations": net.iterations, "slots": slots}

    @_serialized
    def set_optimizer_state(self, state, strict=True):
        """Restore ``get_optimizer_state()``'s output.  ``strict=False`` skips
        the slots of layers that are gone, frozen or of another shape (the
        state of a model whose layers changed since)."""
        if self.optimizer is None:
            raise RuntimeError("compile the model before restoring optimizer state")
        net = self._core()
        names = {layer.name for layer in self._layers}
        for (name, j, k), value in state["slots"].items():
            if not strict and name not in names:
                continue
            layer = self.get_layer(name)
            info = net.params(self._param_holder(layer))[j]
            value = np.asarray(value, np.float32)
            if not strict and (value.size != int(np.prod(info["shape"])) or
                               not layer.trainable or k >= 2 or
                               net.slot(self._param_holder(layer), j, k) is None):
                continue
            net.set_slot(self._param_holder(layer), j, k, value.reshape(info["shape"]))
        net.iterations = int(state["iterations"])

    # -- persistence --------------------------------------------------------
    def save(self, filepath, overwrite=True, include_optimizer=True, save_format=None):
        """An HDF5 file as tf.keras writes it (``save_format`` None or 'h5')."""
        if save_format not in (None, "h5"):
            raise NotImplementedError(f"save_format={save_format!r}: aslnet writes HDF5 "
                                      "files only (save_format='h5')")
        from .saving import save_model
        save_model(self, filepath, overwrite=overwrite, include_optimizer=include_optimizer)

    def save_weights(self, filepath, overwrite=True):
        from .saving import save_weights
        save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath, by_name=False, skip_mismatch=False):
        """Keras's ``load_weights``: by layer order, or ``by_name`` (then
        ``skip_mismatch`` skips layers whose weight shapes differ)."""
        from .saving import load_weights
        load_weights(self, filepath, by_name=by_name, skip_mismatch=skip_mismatch)

    @property
    def metrics_names(self):
        """tf.keras's names of evaluate's values: ['loss', *metrics]."""
        return ["loss", *self.compiled_metrics]

    def get_config(self):
        """Keras's model config (tf.keras 2's Functional/Sequential form)."""
        from .saving import _model_config
        self._require_built()
        return _model_config(self)["config"]

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """A new model (fresh weights) from ``get_config()``'s output."""
        from .saving import _model_from_config
        kind = "Sequential" if issubclass(cls, Sequential) else "Functional"
        return _model_from_config({"class_name": kind, "config": config}, custom_objects)

    def to_json(self, **kwargs):
        """The architecture as Keras's JSON (``models.model_from_json`` reads it)."""
        import json
        from .saving import BACKEND, KERAS_VERSION, _json_default, _model_config
        self._require_built()
        return json.dumps({**_model_config(self), "keras_version": KERAS_VERSION,
                           "backend": BACKEND}, default=_json_default, **kwargs)


def _progbar(steps, verbose, metrics=()):
    verbose = 1 if verbose == "auto" else int(verbose)
    if verbose not in (1, 2) or not steps:        # 2: one line at the end, as Keras
        return None
    from .utils.progbar import Progbar
    return Progbar(steps, verbose=verbose, stateful_metrics=list(metrics))


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
            from .layers import Input
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
            self._net, self._net_state, self._early = None, {}, None
            self.__dict__.pop("_split_cache", None)
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


def load_model(filepath, compile=True):
    from .saving import load_model as _load
    return _load(filepath, compile=compile)


def model_from_json(json_string, custom_objects=None):
    """A new model (fresh weights) from ``Model.to_json()`` (or tf.keras's)."""
    import json
    from .saving import _model_from_config
    return _model_from_config(json.loads(json_string), custom_objects)


def clone_model(model):
    """Keras's ``clone_model``: the same architecture with new layers and newly
    initialised weights (copy them with ``clone.set_weights(model.get_weights())``)."""
    from .saving import _model_config, _model_from_config
    model._require_built()
    return _model_from_config(_model_config(model))


def recalibrate_batch_norm(model, x, batch_size=32, steps=None):
    """Re-create the moving statistics of every BatchNormalization layer
    from data ``x`` (arrays or an image iterator), keeping the function the
    model computes in inference mode unchanged.

    Pretrained weights with batch normalization folded into the
    convolutions carry no statistics (moving_mean 0, moving_variance ~1);
    a *trainable* batch norm then re-normalises activations with batch
    statistics far from the moving ones.  For each layer this measures the
    per-channel mean m and variance v of its input and sets
    ``moving_mean = m, moving_variance = v`` with gamma and beta rescaled so
    that ``gamma * (x - mean) / sqrt(var + eps) + beta`` is unchanged.
    Returns the number of samples measured."""
    from .utils.data import batches, num_steps
    with model._lock:
        return _recalibrate(model, x, batch_size, steps, batches, num_steps)


def _recalibrate(model, x, batch_size, steps, batches, num_steps):
    from .layers import BatchNormalization
    net = model._core()
    bns = [(layer, model._core_index[layer.name][0]) for layer in model._layers
           if isinstance(layer, BatchNormalization)]
    if not bns:
        return 0
    stats = [[0.0, 0.0] for _ in bns]
    count = 0
    for xb, _, _ in batches(x, None, batch_size, False, num_steps(x, batch_size, steps),
                            with_targets=False):
        h, start = model._to_input(xb), 0
        for k, (layer, idx) in enumerate(bns):
            if idx > start:
                h = net.forward(h, training=False, start=start, stop=idx)
                start = idx
            flat = h.reshape(-1, h.shape[-1]).astype(np.float64)
            stats[k][0] = stats[k][0] + flat.sum(0)
            stats[k][1] = stats[k][1] + (flat * flat).sum(0)
        count += h.shape[0]
    for (layer, _), (s, ss) in zip(bns, stats):
        n = count * int(np.prod(layer._in_shape[:-1]))     # values per channel
        m = s / n
        v = np.maximum(ss / n - m * m, 0.0)
        gamma, beta, mean, var = (w.astype(np.float64) for w in layer.get_weights())
        eps = layer.epsilon
        scale = gamma / np.sqrt(var + eps)
        layer.set_weights([scale * np.sqrt(v + eps), beta + scale * (m - mean), m, v])
    return count


from .saving.serialization import register_model_class  # noqa: E402
register_model_class("Functional", Model); register_model_class("Sequential", Sequential)
