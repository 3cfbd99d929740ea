"""Saving and loading models and weights (``Model.save``, ``models.load_model``,
``Model.save_weights``, ``Model.load_weights``).

File format
-----------
Every file aslnet writes is HDF5 (h5py) in **Keras 2.x's legacy h5 layout**,
as ``tf.keras`` 2.6 writes it for ``model.save("m.h5")``:

* root attributes ``keras_version`` ('2.6.0'), ``backend`` ('tensorflow'),
  ``model_config`` (JSON: ``{"class_name": "Functional" | "Sequential",
  "config": {...}}`` with Keras 2.6 layer configs) and, for a compiled model
  saved with ``include_optimizer=True``, ``training_config`` (JSON: loss,
  metrics, ``optimizer_config``);
* group ``model_weights``: attributes ``layer_names``, ``backend``,
  ``keras_version``; one group per layer with attribute ``weight_names``
  and datasets ``model_weights/<layer>/<layer>/<weight>:0``;
* group ``optimizer_weights`` (with ``include_optimizer`` once the optimizer
  has state): attribute ``weight_names`` = ``Adam/iter:0``, then the first
  slot of every trainable weight (``Adam/<layer>/<weight>/m:0``), then the
  second (``.../v:0``) -- ``SGD/.../momentum:0`` for SGD with momentum.

``save_weights`` writes Keras's weights-only layout (the ``model_weights``
group's content at the root of the file).

``.h5``, ``.hdf5`` and ``.keras`` (the suffixes tf.keras 2.x saves as h5)
get exactly that.  Any other suffix (``.aslnet``, none...) gets aslnet's
native format: the very same HDF5 file, plus an integrity header in HDF5's
user block (the 512 bytes HDF5 reserves for applications before its
superblock): a magic, the length and the SHA-256 of the rest of the file.
h5py and tf.keras 2.x read it as any h5 file; aslnet checks it before
libhdf5 parses anything, so a truncated or corrupted native file gives a
clear error (libhdf5 can crash on some corrupted metadata) and silent
corruption of weights is detected.  Editing a native file with h5py
invalidates its checksum (edit ``.h5`` files instead).  So ``.keras`` is
*not* Keras 3's zip format, and no suffix is *not* a TensorFlow SavedModel
directory.  Keras 3 opens aslnet's h5 files (through its legacy h5 loader);
aslnet opens the weights of the h5 files Keras 3's ``model.save('m.h5')``
writes (``load_weights``), not their model config (another format:
``load_model`` says so), nor Keras 3's ``.weights.h5`` layout (refused with
that advice).  Loading never looks at the suffix: it sniffs the HDF5 signature
and the header.

Every write is atomic: the file is written to a temporary file in the same
directory, flushed and fsync'ed, then moved over the destination with
``os.replace``; an interrupted save leaves the previous file (if any)
untouched and no temporary file behind.

Rebuilding a model: each layer is ``aslnet.layers.LAYER_CLASSES[class_name]
.from_config(config)`` with aslnet's own config keys (the Keras-only keys are
checked to hold values aslnet implements, then dropped), connected as a
chain through ``inbound_nodes``.  Only chains (one input, one output, one
inbound tensor per layer) are supported.

Not saved, because the C core does not expose it: the position of a
``Dropout`` layer's random stream (a loaded model restarts it from the
layer's seed) and optimizer slots of layers that are frozen at save time.
As in Keras, an ``InputLayer``'s ``trainable`` flag is not saved.
"""
import contextlib
import copy
import errno
import hashlib
import inspect
import json
import os
import struct
import tempfile
import warnings

import h5py
import numpy as np

from . import layers as layers_mod
from . import optimizers as optimizers_mod
from .layers import InputLayer, Layer
from .models import Model, Sequential

__all__ = ["save_model", "load_model", "save_weights", "load_weights", "ModelFileError"]

KERAS_VERSION = "2.6.0"
KERAS_H5_SUFFIXES = (".h5", ".hdf5", ".keras")   # tf.keras 2.x's _is_hdf5_filepath
BACKEND = "tensorflow"
# HDF5 object headers are limited to 64 KiB; Keras splits longer name lists.
HDF5_OBJECT_HEADER_LIMIT = 64512
# aslnet-native files: the HDF5 user block (bytes HDF5 leaves to applications
# before its superblock) starts with _MAGIC, the length of what follows the
# user block and its SHA-256 -- checked before libhdf5 parses anything.
_USERBLOCK = 512
_MAGIC = b"ASLNET\x00\x01"
_HEADER = struct.Struct("<8sQ32s")


class ModelFileError(ValueError, OSError):
    """A file that is not a readable aslnet/Keras model or weights file
    (corrupt, truncated, not HDF5, no model config).  Both a ``ValueError``
    and an ``OSError`` (as h5py's and tf.keras's errors for such files)."""


# ---------------------------------------------------------------------------
# Keras layer configs
# ---------------------------------------------------------------------------
def _glorot():
    return {"class_name": "GlorotUniform", "config": {"seed": None}}


def _zeros():
    return {"class_name": "Zeros", "config": {}}


def _ones():
    return {"class_name": "Ones", "config": {}}


# The keys tf.keras 2.6 writes after ``name``, ``trainable``, ``dtype``, in its
# order, with its defaults (used for the keys aslnet's layers do not have).
# But DepthwiseConv2D's ``groups``, which tf.keras 2.6 writes and Keras 3
# refuses (both take its absence).
_CONV_TAIL = [("kernel_regularizer", None), ("bias_regularizer", None),
              ("activity_regularizer", None), ("kernel_constraint", None),
              ("bias_constraint", None)]
_KERAS_LAYER_KEYS = {
    "Conv2D": [("filters", None), ("kernel_size", None), ("strides", (1, 1)),
               ("padding", "valid"), ("data_format", "channels_last"),
               ("dilation_rate", (1, 1)), ("groups", 1), ("activation", "linear"),
               ("use_bias", True), ("kernel_initializer", _glorot),
               ("bias_initializer", _zeros)] + _CONV_TAIL,
    "DepthwiseConv2D": [("kernel_size", None), ("strides", (1, 1)), ("padding", "valid"),
                        ("data_format", "channels_last"), ("dilation_rate", (1, 1)),
                        ("activation", "linear"), ("use_bias", True),
                        ("bias_initializer", _zeros), ("bias_regularizer", None),
                        ("activity_regularizer", None), ("bias_constraint", None),
                        ("depth_multiplier", 1), ("depthwise_initializer", _glorot),
                        ("depthwise_regularizer", None), ("depthwise_constraint", None)],
    "ZeroPadding2D": [("padding", ((1, 1), (1, 1))), ("data_format", "channels_last")],
    "BatchNormalization": [("axis", -1), ("momentum", 0.99), ("epsilon", 0.001),
                           ("center", True), ("scale", True),
                           ("beta_initializer", _zeros), ("gamma_initializer", _ones),
                           ("moving_mean_initializer", _zeros),
                           ("moving_variance_initializer", _ones),
                           ("beta_regularizer", None), ("gamma_regularizer", None),
                           ("beta_constraint", None), ("gamma_constraint", None)],
    "ReLU": [("max_value", None), ("negative_slope", 0.0), ("threshold", 0.0)],
    "Activation": [("activation", "linear")],
    "GlobalAveragePooling2D": [("data_format", "channels_last"), ("keepdims", False)],
    "GlobalMaxPooling2D": [("data_format", "channels_last"), ("keepdims", False)],
    "Dropout": [("rate", None), ("noise_shape", None), ("seed", None)],
    "Reshape": [("target_shape", None)],
    "Flatten": [("data_format", "channels_last")],
    "Dense": [("units", None), ("activation", "linear"), ("use_bias", True),
              ("kernel_initializer", _glorot), ("bias_initializer", _zeros)] + _CONV_TAIL,
}


def _policy_name(v):
    """The dtype policy a Keras layer config's "dtype" names: "float32",
    "mixed_bfloat16" (a name, tf.keras 2's Policy dict or Keras 3's
    DTypePolicy dict), or None for anything aslnet does not compute."""
    if v is None or v == "float32":
        return "float32"
    if v == "mixed_bfloat16":
        return v
    if isinstance(v, dict) and v.get("class_name") in ("Policy", "DTypePolicy"):
        name = (v.get("config") or {}).get("name")
        if name in ("float32", "mixed_bfloat16"):
            return name
    return None


def _keras_dtype(policy):
    """A policy's name: the one spelling that tf.keras 2 and Keras 3 both
    take as a layer's ``dtype`` (Keras 3 cannot read tf.keras 2's Policy
    dict, and tf.keras 2 does not know Keras 3's DTypePolicy)."""
    return policy.name


def _is_one(v):
    return v == 1 or (isinstance(v, (list, tuple)) and all(x == 1 for x in v))


def _is_none(v):
    return v is None


def _any(v):
    return True


# Keys a Keras config may hold that aslnet's layers do not take: the values
# aslnet computes (anything else cannot be loaded faithfully).
_KERAS_ONLY = {
    "dtype": (lambda v: _policy_name(v) is not None, "'float32' or policy 'mixed_bfloat16'"),
    "data_format": (lambda v: v in (None, "channels_last"), "'channels_last'"),
    "dilation_rate": (_is_one, "1"),
    "groups": (lambda v: v == 1, "1"),
    "sparse": (lambda v: not v, "false"),
    "ragged": (lambda v: not v, "false"),
    "center": (lambda v: v is True, "true"),
    "scale": (lambda v: v is True, "true"),
    "noise_shape": (_is_none, "null"),
    "batch_input_shape": (_any, ""),        # on a non-input layer: Keras ignores it too
    "batch_size": (_any, ""),
}
for _k in ("kernel", "bias", "depthwise", "beta", "gamma", "moving_mean", "moving_variance"):
    _KERAS_ONLY[_k + "_initializer"] = (_any, "")    # weights come from the file
for _k in ("kernel", "bias", "depthwise", "beta", "gamma", "activity"):
    _KERAS_ONLY[_k + "_regularizer"] = (_is_none, "null")
for _k in ("kernel", "bias", "depthwise", "beta", "gamma"):
    _KERAS_ONLY[_k + "_constraint"] = (_is_none, "null")


def _bn_keras_axis(layer):
    """aslnet normalises the channel axis: Keras writes it as [rank]."""
    rank = len(layer._in_shape) if layer._in_shape is not None else 3
    return [rank]


def _keras_layer_config(layer, dtype="float32"):
    """tf.keras 2.6's config for an aslnet layer, from ``layer.get_config()``
    (the source of truth) plus Keras's own keys at their defaults; ``dtype``:
    the model's dtype policy as Keras writes it (``_keras_dtype``)."""
    cls = type(layer).__name__
    cfg = layer.get_config()
    if isinstance(layer, InputLayer):
        out = {"batch_input_shape": list(cfg["batch_input_shape"]), "dtype": "float32",
               "sparse": False, "ragged": False, "name": cfg["name"]}
        out.update((k, v) for k, v in cfg.items() if k not in out)
        return out
    out = {"name": cfg["name"], "trainable": cfg.get("trainable", layer.trainable),
           "dtype": dtype}
    for key, default in _KERAS_LAYER_KEYS.get(cls, []):
        if key in cfg:
            out[key] = cfg[key]
        else:
            out[key] = default() if callable(default) else copy.deepcopy(default)
    if cls == "BatchNormalization":
        out["axis"] = _bn_keras_axis(layer)
    out.update((k, v) for k, v in cfg.items() if k not in out)   # aslnet-only keys
    return out


def _init_params(cls):
    """Keyword names the constructors of ``cls`` (up to ``Layer``) take."""
    names = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None:
            for p in inspect.signature(init).parameters.values():
                if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                    names.add(p.name)
        if klass is Layer or klass is object:
            break
    names.update(("name", "trainable"))
    return names


def _aslnet_layer_config(cls, class_name, kcfg, layer_name):
    """aslnet's config from a Keras one: Keras-only keys checked and dropped."""
    accepted = _init_params(cls)
    if issubclass(cls, InputLayer):
        accepted.add("batch_input_shape")
    out = {}
    for key, value in kcfg.items():
        if key in accepted:
            out[key] = value
        elif key in _KERAS_ONLY:
            ok, expected = _KERAS_ONLY[key]
            if not ok(value):
                raise ValueError(f"Layer '{layer_name}' ({class_name}): {key}={value!r} is "
                                 f"not supported by aslnet (only {expected})")
        else:
            raise ValueError(f"Layer '{layer_name}' ({class_name}): unsupported config key "
                             f"{key!r} (value {value!r})")
    out.setdefault("name", layer_name)
    return out


# ---------------------------------------------------------------------------
# Model config (Keras's Functional / Sequential JSON)
# ---------------------------------------------------------------------------
def _keras_layers(model):
    """The layers Keras lists in ``model.layers`` (a Sequential hides its input)."""
    return model._layers[1:] if isinstance(model, Sequential) else list(model._layers)


def _check_saveable(model):
    names = [l.name for l in model._layers]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"Model '{model.name}' has several layers named {dup}; layer "
                         "names must be unique to be saved")
    bad = [n for n in names if not n or "/" in n]
    if bad:
        raise ValueError(f"Layer names {bad} cannot be saved (empty or containing '/')")


def _model_config(model):
    layers = model._layers
    dtype = _keras_dtype(model.dtype_policy)
    if isinstance(model, Sequential):
        return {"class_name": "Sequential",
                "config": {"name": model.name,
                           "layers": [{"class_name": type(l).__name__,
                                       "config": _keras_layer_config(l, dtype)}
                                      for l in layers]}}
    entries = []
    for i, layer in enumerate(layers):
        entries.append({"class_name": type(layer).__name__,
                        "config": _keras_layer_config(layer, dtype),
                        "name": layer.name,
                        "inbound_nodes": [] if i == 0 else [[[layers[i - 1].name, 0, 0, {}]]]})
    return {"class_name": "Functional",
            "config": {"name": model.name, "layers": entries,
                       "input_layers": [[layers[0].name, 0, 0]],
                       "output_layers": [[layers[-1].name, 0, 0]]}}


def _chain_from_functional(cfg):
    """The layer entries of a Functional config, input first; only chains."""
    entries = cfg.get("layers")
    if not isinstance(entries, list) or not entries:
        raise ValueError("model_config has no layers")
    by_name = {}
    for e in entries:
        name = e.get("name") or (e.get("config") or {}).get("name")
        if not name:
            raise ValueError("a layer in model_config has no name")
        if name in by_name:
            raise ValueError(f"model_config has several layers named '{name}'")
        by_name[name] = e

    def single(refs, what):
        if not isinstance(refs, list) or not refs:
            raise ValueError(f"model_config: bad {what}_layers {refs!r}")
        if len(refs) != 1:
            raise NotImplementedError(f"aslnet models have exactly one {what}; the file's "
                                      f"model has {len(refs)}: {refs!r}")
        ref = refs[0]
        if not isinstance(ref, list) or len(ref) < 1 or ref[0] not in by_name:
            raise ValueError(f"model_config: bad {what} reference {ref!r}")
        if len(ref) > 1 and ref[1:3] != [0, 0][:len(ref[1:3])]:
            raise NotImplementedError(f"aslnet models are chains; {what} {ref!r} refers "
                                      "to a shared layer")
        return ref[0]

    inp = single(cfg.get("input_layers"), "input")
    out = single(cfg.get("output_layers"), "output")
    chain, seen, name = [], set(), out
    while True:
        if name in seen:
            raise ValueError(f"model_config: cycle through layer '{name}'")
        seen.add(name)
        e = by_name[name]
        chain.append(e)
        nodes = e.get("inbound_nodes") or []
        if name == inp:
            if nodes:
                raise ValueError(f"model_config: the input layer '{name}' has inbound nodes")
            break
        if not isinstance(nodes, list) or not nodes:
            raise ValueError(f"model_config: layer '{name}' has no inbound node")
        if len(nodes) != 1:
            raise NotImplementedError(f"aslnet models are chains: layer '{name}' is called "
                                      f"{len(nodes)} times (a shared layer)")
        node = nodes[0]
        if isinstance(node, dict):
            raise NotImplementedError(f"layer '{name}': this inbound-node format is not "
                                      "supported (Keras 2.x h5 files only)")
        if not isinstance(node, list) or len(node) != 1:
            raise NotImplementedError(f"aslnet models are chains: layer '{name}' takes "
                                      f"{len(node) if isinstance(node, list) else '?'} inputs")
        ref = node[0]
        if not isinstance(ref, list) or len(ref) < 3 or ref[0] not in by_name:
            raise ValueError(f"model_config: layer '{name}' has a bad inbound node {node!r}")
        if ref[1] != 0 or ref[2] != 0 or (len(ref) > 3 and ref[3]):
            raise NotImplementedError(f"aslnet models are chains: layer '{name}' takes "
                                      f"{ref!r} (a shared layer, a multi-output layer or "
                                      "call arguments)")
        name = ref[0]
    if len(chain) != len(entries):
        extra = sorted(set(by_name) - seen)
        raise NotImplementedError(f"aslnet models are chains from the input to the output; "
                                  f"layers {extra} are not on that chain")
    return chain[::-1]


def _make_layer(class_name, kcfg, layer_name, custom_objects):
    cls = (custom_objects or {}).get(class_name) or layers_mod.LAYER_CLASSES.get(class_name)
    if cls is None:
        raise ValueError(f"Unknown layer: {class_name} (layer '{layer_name}'). aslnet has "
                         f"{sorted(layers_mod.LAYER_CLASSES)}; pass custom_objects for "
                         "your own layer classes")
    if not isinstance(kcfg, dict):
        raise ValueError(f"layer '{layer_name}': config is not a JSON object")
    kcfg = dict(kcfg)
    bn_axis = None
    if class_name == "BatchNormalization" and "axis" in kcfg:
        bn_axis = kcfg["axis"]
        if isinstance(bn_axis, (list, tuple)):
            if len(bn_axis) != 1:
                raise ValueError(f"Layer '{layer_name}': aslnet's BatchNormalization "
                                 f"normalises one (the channel) axis, got axis={bn_axis}")
            bn_axis = bn_axis[0]
        kcfg["axis"] = -1
    layer = cls.from_config(_aslnet_layer_config(cls, class_name, kcfg, layer_name))
    return layer, bn_axis


def _model_from_config(model_config, custom_objects=None):
    if not isinstance(model_config, dict) or "config" not in model_config:
        raise ValueError("model_config is not a Keras model config")
    class_name = model_config.get("class_name")
    cfg = model_config["config"]
    if class_name in ("Functional", "Model"):
        entries = [(e.get("class_name"), e.get("config"), e.get("name")
                    or (e.get("config") or {}).get("name"))
                   for e in _chain_from_functional(cfg)]
    elif class_name == "Sequential":
        raw = cfg.get("layers") if isinstance(cfg, dict) else cfg
        if not isinstance(raw, list) or not raw:
            raise ValueError("model_config has no layers")
        entries = [(e.get("class_name"), e.get("config"), (e.get("config") or {}).get("name"))
                   for e in raw]
        if entries[0][0] != "InputLayer":
            first = entries[0][1] or {}
            if "batch_input_shape" not in first:
                raise ValueError("aslnet needs the input shape of a Sequential model "
                                 "(no InputLayer or batch_input_shape in the file)")
            entries.insert(0, ("InputLayer",
                               {"batch_input_shape": first["batch_input_shape"],
                                "name": f"{entries[0][2]}_input"}, f"{entries[0][2]}_input"))
    else:
        raise ValueError(f"Unsupported model class {class_name!r} (aslnet reads Functional "
                         "and Sequential models)")
    if entries[0][0] != "InputLayer":
        raise ValueError("the model's first layer is not an InputLayer")

    built, axes = [], []
    for cn, kcfg, lname in entries:
        layer, bn_axis = _make_layer(cn, kcfg, lname, custom_objects)
        built.append(layer)
        if bn_axis is not None:
            axes.append((layer, bn_axis))
    if not isinstance(built[0], InputLayer) or any(isinstance(l, InputLayer) for l in built[1:]):
        raise NotImplementedError("aslnet models have one InputLayer, first")
    name = cfg.get("name") if isinstance(cfg, dict) else None
    if class_name == "Sequential":
        model = Sequential(built, name=name)
    else:
        x = built[0].output
        for layer in built[1:]:
            x = layer(x)
        model = Model(built[0].output, x, name=name)
    policies = {_policy_name((kcfg or {}).get("dtype")) for _, kcfg, _ in entries[1:]}
    if len(policies) == 1:   # as saved (Keras restores each layer's policy; aslnet's is
        model.dtype_policy = policies.pop()   # per model: only when all layers agree)
    for layer, axis in axes:
        rank = len(layer._in_shape)
        if axis not in (-1, rank):
            raise ValueError(f"Layer '{layer.name}': aslnet's BatchNormalization normalises "
                             f"the channel axis ({rank} or -1), got axis={axis}")
    return model


# ---------------------------------------------------------------------------
# Training config
# ---------------------------------------------------------------------------
# (Keras class name, [(key, default)] in tf.keras 2.6's get_config order)
_KERAS_OPTIMIZERS = {
    "adam": ("Adam", [("learning_rate", 0.001), ("decay", 0.0), ("beta_1", 0.9),
                      ("beta_2", 0.999), ("epsilon", 1e-7), ("amsgrad", False)]),
    "sgd": ("SGD", [("learning_rate", 0.01), ("decay", 0.0), ("momentum", 0.0),
                    ("nesterov", False)]),
}
_OPTIMIZER_KERAS_ONLY = {
    "decay": (lambda v: not v, "0"),
    "amsgrad": (lambda v: not v, "false"),
    "clipnorm": (_is_none, "null"),
    "clipvalue": (_is_none, "null"),
    "global_clipnorm": (_is_none, "null"),
}


def _keras_optimizer_config(optimizer):
    cfg = optimizer.get_config()
    kind = optimizer._core_name
    class_name, keys = _KERAS_OPTIMIZERS.get(kind, (type(optimizer).__name__, []))
    out = {"name": class_name}
    for key, default in keys:
        out[key] = cfg.get(key, default)
    out.update((k, v) for k, v in cfg.items() if k not in out and k != "name")
    return {"class_name": class_name, "config": out}


def _optimizer_from_keras(oc):
    if isinstance(oc, str):
        return optimizers_mod.get(oc)
    if not isinstance(oc, dict) or "class_name" not in oc:
        raise ValueError(f"bad optimizer_config {oc!r}")
    class_name = str(oc["class_name"])
    kind = class_name.lower()
    cls = {"adam": optimizers_mod.Adam, "sgd": optimizers_mod.SGD}.get(kind)
    if cls is None:
        raise ValueError(f"Unsupported optimizer {class_name!r}: aslnet has Adam and SGD "
                         "(load with compile=False and compile the model yourself)")
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    cfg = dict(oc.get("config") or {})
    cfg.pop("name", None)
    if "lr" in cfg:
        cfg.setdefault("learning_rate", cfg.pop("lr"))
    out = {"name": kind}
    for key, value in cfg.items():
        if key in accepted:
            if isinstance(value, dict):
                raise ValueError(f"optimizer {class_name}: {key}={value!r} (a schedule) is "
                                 "not supported by aslnet")
            out[key] = value
        elif key in _OPTIMIZER_KERAS_ONLY:
            ok, expected = _OPTIMIZER_KERAS_ONLY[key]
            if not ok(value):
                raise ValueError(f"optimizer {class_name}: {key}={value!r} is not supported "
                                 f"by aslnet (only {expected})")
        elif value is not None:
            raise ValueError(f"optimizer {class_name}: unsupported option {key}={value!r}")
    return optimizers_mod.get(out)


_METRIC_FNS = {"accuracy": None, "acc": None, "categorical_accuracy": "categorical_accuracy",
               "sparse_categorical_accuracy": "sparse_categorical_accuracy"}


def _keras_metric(name, loss):
    fn = _METRIC_FNS.get(name) or ("sparse_categorical_accuracy"
                                   if loss == "sparse_categorical_crossentropy"
                                   else "categorical_accuracy")
    return {"class_name": "MeanMetricWrapper",
            "config": {"name": name, "dtype": "float32", "fn": fn}}


def _training_config(model):
    metrics = [_keras_metric(m, model.loss) for m in model.compiled_metrics]
    return {"loss": model.loss, "metrics": metrics or None, "weighted_metrics": None,
            "loss_weights": None, "optimizer_config": _keras_optimizer_config(model.optimizer)}


def _flatten(obj):
    if isinstance(obj, (list, tuple)):
        return [x for o in obj for x in _flatten(o)]
    if isinstance(obj, dict) and "class_name" not in obj and "config" not in obj:
        return [x for o in obj.values() for x in _flatten(o)]   # {output_name: ...}
    return [obj]


def _compile_from_training_config(model, tc):
    loss = tc.get("loss")
    losses = _flatten(loss)
    if len(losses) != 1:
        raise ValueError(f"aslnet models have one loss; the file has {loss!r}")
    loss = losses[0]
    if isinstance(loss, dict):
        cn = loss.get("class_name")
        loss = {"CategoricalCrossentropy": "categorical_crossentropy",
                "SparseCategoricalCrossentropy": "sparse_categorical_crossentropy"}.get(
                    cn, (loss.get("config") or {}).get("fn") or cn)
    metrics = []
    for m in _flatten(tc.get("metrics") or []) + _flatten(tc.get("weighted_metrics") or []):
        if isinstance(m, dict):
            m = (m.get("config") or {}).get("name") or m.get("class_name")
        if m not in metrics:
            metrics.append(m)
    model.compile(optimizer=_optimizer_from_keras(tc.get("optimizer_config")), loss=loss,
                  metrics=metrics)


# ---------------------------------------------------------------------------
# Optimizer weights
# ---------------------------------------------------------------------------
def _slot_names(optimizer):
    if optimizer._core_name == "adam":
        return ("m", "v")
    if optimizer._core_name == "sgd" and np.float32(optimizer.momentum) > 0:
        return ("momentum",)
    return ()


def _var_base(var):
    name = var.name
    return name[:-2] if name.endswith(":0") else name


def _slot_order(model):
    """[(layer, j, k, variable, slot name)] in tf.keras's order: the first slot
    of every trainable weight, then the second."""
    order = []
    for k, slot in enumerate(_slot_names(model.optimizer)):
        for layer in model._layers:
            if not layer.trainable:
                continue
            for j, var in enumerate(layer.weights):
                if var.trainable:
                    order.append((layer, j, k, var, slot))
    return order


def _optimizer_weights(model):
    """(names, values) of ``optimizer_weights``, or None when the optimizer
    has no state yet (as tf.keras before the first step)."""
    state = model.get_optimizer_state()
    slots = state["slots"]
    iterations = int(state["iterations"])
    if iterations == 0 and not any(np.any(v) for v in slots.values()):
        return None
    prefix = _KERAS_OPTIMIZERS.get(model.optimizer._core_name,
                                   (type(model.optimizer).__name__,))[0]
    names, values = [f"{prefix}/iter:0"], [np.int64(iterations)]
    for layer, j, k, var, slot in _slot_order(model):
        value = slots.get((layer.name, j, k))
        if value is None:
            raise RuntimeError(f"internal: no optimizer slot {slot} for {var.name}")
        names.append(f"{prefix}/{_var_base(var)}/{slot}:0")
        values.append(np.asarray(value, np.float32).reshape(var.shape))
    return names, values


def _restore_optimizer_weights(model, names, values, where):
    """Positional, as tf.keras: iterations, then the slots in _slot_order.
    On a mismatch, warn and keep a fresh optimizer (as tf.keras does)."""
    order = _slot_order(model)
    problem = None
    if not names or not names[0].endswith("iter:0") or np.ndim(values[0]) != 0:
        problem = "the first optimizer weight is not the iteration count"
    elif not (np.isfinite(values[0]) and values[0] >= 0 and values[0] == int(values[0])):
        problem = f"the iteration count is {values[0]}"
    elif len(names) - 1 != len(order):
        problem = (f"the file has {len(names) - 1} optimizer slot arrays, the model's "
                   f"optimizer has {len(order)}")
    else:
        for (layer, j, k, var, slot), name, value in zip(order, names[1:], values[1:]):
            if np.shape(value) != var.shape:
                problem = (f"optimizer weight {name} has shape {np.shape(value)}, "
                           f"{var.name} has {var.shape}")
                break
    if problem:
        warnings.warn(f"{where}: error in loading the saved optimizer state ({problem}). "
                      "As a result, your model is starting with a freshly initialized "
                      "optimizer.", stacklevel=3)
        return
    slots = {(layer.name, j, k): np.asarray(value, np.float32)
             for (layer, j, k, var, slot), value in zip(order, values[1:])}
    model.set_optimizer_state({"iterations": int(values[0]), "slots": slots})


# ---------------------------------------------------------------------------
# HDF5 helpers
# ---------------------------------------------------------------------------
def _json_default(obj):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if callable(obj) and hasattr(obj, "__name__"):
        return obj.__name__
    raise TypeError(f"Not JSON serializable: {obj!r}")


def _to_json(obj):
    return json.dumps(obj, default=_json_default).encode("utf8")


def _save_attributes(group, name, data):
    """Keras's save_attributes_to_hdf5_group: a list of bytes as one fixed-
    length string attribute, split into ``name0``, ``name1``... if too long."""
    bad = [x for x in data if len(x) > HDF5_OBJECT_HEADER_LIMIT]
    if bad:
        raise RuntimeError(f"The following attributes cannot be saved to HDF5 file because "
                           f"they are larger than {HDF5_OBJECT_HEADER_LIMIT} bytes: {bad}")
    data_npy = np.asarray(data)
    num_chunks = 1
    chunks = np.array_split(data_npy, num_chunks)
    while any(x.nbytes > HDF5_OBJECT_HEADER_LIMIT for x in chunks):
        num_chunks += 1
        chunks = np.array_split(data_npy, num_chunks)
    if num_chunks > 1:
        for i, chunk in enumerate(chunks):
            group.attrs[f"{name}{i}"] = chunk
    else:
        group.attrs[name] = data_npy


def _load_attributes(group, name):
    def decode(v):
        return v.decode("utf8") if hasattr(v, "decode") else str(v)

    if name in group.attrs:
        return [decode(v) for v in np.atleast_1d(group.attrs[name])]
    data, i = [], 0
    while f"{name}{i}" in group.attrs:
        data.extend(decode(v) for v in np.atleast_1d(group.attrs[f"{name}{i}"]))
        i += 1
    return data


def _attr_str(group, name):
    v = group.attrs.get(name)
    if v is None:
        return None
    if isinstance(v, np.ndarray) and v.shape == ():
        v = v[()]
    return v.decode("utf8") if hasattr(v, "decode") else str(v)


def _write_array(group, name, value):
    """One dataset (the unit of work of a save; tests interrupt saves here)."""
    dset = group.create_dataset(name, value.shape, dtype=value.dtype)
    if not value.shape:
        dset[()] = value
    else:
        dset[:] = value


def _legacy_weights(layer):
    """Keras's weight order in h5 files: trainable, then non-trainable."""
    return layer.trainable_weights + layer.non_trainable_weights


def _write_weights_group(f, layers):
    """Keras's save_weights_to_hdf5_group."""
    _save_attributes(f, "layer_names", [l.name.encode("utf8") for l in layers])
    f.attrs["backend"] = BACKEND.encode("utf8")
    f.attrs["keras_version"] = KERAS_VERSION.encode("utf8")
    for layer in sorted(layers, key=lambda l: l.name):
        g = f.create_group(layer.name)
        weights = _legacy_weights(layer)
        names = [w.name.encode("utf8") for w in weights]
        _save_attributes(g, "weight_names", names)
        for name, var in zip(names, weights):
            _write_array(g, name.decode("utf8"), var.numpy())


def _write_model(f, model, include_optimizer):
    _check_saveable(model)
    f.attrs["keras_version"] = KERAS_VERSION
    f.attrs["backend"] = BACKEND
    f.attrs["model_config"] = _to_json(_model_config(model))
    compiled = model.optimizer is not None and model.loss is not None
    if include_optimizer and compiled:
        f.attrs["training_config"] = _to_json(_training_config(model))
    _write_weights_group(f.create_group("model_weights"), _keras_layers(model))
    if include_optimizer and compiled:
        opt = _optimizer_weights(model)
        if opt is not None:
            g = f.create_group("optimizer_weights")
            names, values = opt
            _save_attributes(g, "weight_names", [n.encode("utf8") for n in names])
            for name, value in zip(names, values):
                _write_array(g, name, value)


def _read_weights_group(f):
    """[(layer name, [(weight name, array)])] in the file's layer order."""
    out = []
    for name in _load_attributes(f, "layer_names"):
        g = f[name]
        out.append((name, [(w, np.asarray(g[w])) for w in _load_attributes(g, "weight_names")]))
    return out


def _assign_topological(layers, saved, where):
    """Keras's load_weights_from_hdf5_group: layers with weights, in order.
    Every check runs before any weight changes."""
    layers = [l for l in layers if l.weights]
    saved = [(n, ws) for n, ws in saved if ws]
    if len(saved) != len(layers):
        raise ValueError(f"{where}: You are trying to load a weight file containing "
                         f"{len(saved)} layers into a model with {len(layers)} layers.")
    plan = []
    for k, (layer, (name, ws)) in enumerate(zip(layers, saved)):
        plan.append((layer, _check_layer_weights(layer, name, ws, where, k)))
    for layer, values in plan:
        _set_legacy(layer, values)


def _check_layer_weights(layer, name, ws, where, k=None):
    legacy = _legacy_weights(layer)
    which = (f"Layer #{k} (named \"{layer.name}\" in the current model) was found to "
             f"correspond to layer {name} in the save file. However the new layer "
             if k is not None else f"Layer \"{layer.name}\" ")
    if len(ws) != len(legacy):
        raise ValueError(f"{where}: {which}{layer.name} expects {len(legacy)} weights, but "
                         f"the saved weights have {len(ws)} elements.")
    values = []
    for var, (wname, value) in zip(legacy, ws):
        if value.shape != var.shape:
            raise ValueError(f"{where}: {which}weight {var.name} has shape {var.shape}, "
                             f"but the saved weight {wname} has shape {value.shape}.")
        if not np.issubdtype(value.dtype, np.number):
            raise ValueError(f"{where}: saved weight {wname} is not numeric ({value.dtype})")
        values.append(value)
    return values


def _set_legacy(layer, values):
    by_id = {id(v): value for v, value in zip(_legacy_weights(layer), values)}
    layer.set_weights([by_id[id(v)] for v in layer.weights])


def _assign_by_name(layers, saved, where, skip_mismatch):
    """Keras's load_weights_from_hdf5_group_by_name."""
    index = {}
    for layer in layers:
        index.setdefault(layer.name, []).append(layer)
    plan = []
    for name, ws in saved:
        for layer in index.get(name, []):
            try:
                plan.append((layer, _check_layer_weights(layer, name, ws, where)))
            except ValueError as e:
                if not skip_mismatch:
                    raise
                warnings.warn(f"Skipping loading of weights for layer {layer.name}: {e}",
                              stacklevel=3)
    for layer, values in plan:
        _set_legacy(layer, values)


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------
def _umask():
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _fsync_dir(d):
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _is_keras_h5_path(path):
    return os.fspath(path).lower().endswith(KERAS_H5_SUFFIXES)


def _payload_digest(fh, start):
    """(length, sha256) of the bytes of ``fh`` from ``start`` on."""
    h, n = hashlib.sha256(), 0
    fh.seek(start)
    while True:
        chunk = fh.read(1 << 20)
        if not chunk:
            return n, h.digest()
        h.update(chunk)
        n += len(chunk)


def _write_integrity_header(path):
    with open(path, "r+b") as fh:
        n, digest = _payload_digest(fh, _USERBLOCK)
        fh.seek(0)
        fh.write(_HEADER.pack(_MAGIC, n, digest))


def _check_integrity_header(path, what):
    """For aslnet-native files: the payload's length and SHA-256 as saved."""
    with open(path, "rb") as fh:
        head = fh.read(_HEADER.size)
        if len(head) < _HEADER.size or not head.startswith(_MAGIC):
            return
        _, n, digest = _HEADER.unpack(head)
        got_n, got_digest = _payload_digest(fh, _USERBLOCK)
    if got_n != n:
        raise ModelFileError(f"{what} file {path} is truncated or extended: {got_n} bytes of "
                             f"data after the header, {n} when saved")
    if got_digest != digest:
        raise ModelFileError(f"{what} file {path} is corrupt: its SHA-256 differs from the "
                             "one recorded when it was saved (or it was modified after "
                             "saving; edit .h5 files instead)")


@contextlib.contextmanager
def _atomic_h5(filepath, overwrite):
    """An h5py.File to write; it becomes ``filepath`` only once complete.
    Paths without a Keras suffix get aslnet's native integrity header."""
    path = os.fspath(filepath)
    native = not _is_keras_h5_path(path)
    if os.path.islink(path):
        path = os.path.realpath(path)          # write through a symlink, as h5py would
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "Cannot save to a directory", path)
    if not overwrite and os.path.lexists(path):
        raise FileExistsError(errno.EEXIST, "File exists and overwrite=False", path)
    if os.path.exists(path) and not os.access(path, os.W_OK):
        # replacing would bypass the file's own permissions: refuse, as writing would
        raise PermissionError(errno.EACCES, "Permission denied", path)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    try:
        mode = os.stat(path).st_mode & 0o7777
    except OSError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=d)
    os.close(fd)
    try:
        with h5py.File(tmp, "w", userblock_size=_USERBLOCK if native else 0) as f:
            yield f
            f.flush()
        if native:
            _write_integrity_header(tmp)
        fd = os.open(tmp, os.O_RDWR)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, mode)
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)              # fails if someone created path meanwhile
            except FileExistsError:
                raise FileExistsError(errno.EEXIST, "File exists and overwrite=False",
                                      path) from None
            except OSError:                     # no hard links here
                if os.path.lexists(path):
                    raise FileExistsError(errno.EEXIST, "File exists and overwrite=False",
                                          path) from None
                os.replace(tmp, path)
            else:
                os.unlink(tmp)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(d)


# What h5py/json raise on damaged content while a file is read.
_READ_ERRORS = (OSError, KeyError, TypeError, AttributeError, IndexError, ValueError,
                RuntimeError)


@contextlib.contextmanager
def _open_h5(filepath, what):
    """Open a model/weights file for reading, with clear errors."""
    if isinstance(filepath, h5py.Group):
        yield filepath, getattr(filepath.file, "filename", "<h5py group>")
        return
    path = os.fspath(filepath)
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, f"No file or directory found at {path}", path)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, f"{path} is a directory, not an aslnet/Keras "
                                "HDF5 file (TensorFlow SavedModel directories are not "
                                "supported)", path)
    try:
        is_h5 = h5py.is_hdf5(path)
    except OSError as e:
        raise ModelFileError(f"Cannot read {what} file {path}: {e}") from e
    if not is_h5:
        with open(path, "rb") as fh:
            if fh.read(4) == b"PK\x03\x04":
                raise ModelFileError(
                    f"{path} is a zip archive (Keras 3's .keras format?): aslnet reads "
                    "HDF5 files.  In Keras, model.save('model.h5') writes one whose weights "
                    "aslnet's model.load_weights takes")
        raise ModelFileError(f"{path} is not an aslnet/Keras {what} file: no HDF5 signature "
                             f"(size {os.path.getsize(path)} bytes; corrupt, truncated or "
                             "another format)")
    try:
        _check_integrity_header(path, what)
    except ModelFileError:
        raise
    except OSError as e:
        raise ModelFileError(f"Cannot read {what} file {path}: {e}") from e
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ModelFileError(f"Cannot open {what} file {path}: it is corrupt or truncated "
                             f"({e})") from e
    with f:
        yield f, path


def _refuse_keras3_weights(f, where):
    """Keras 3's ``save_weights('x.weights.h5')`` layout: layers/<name>/vars/<i>."""
    if isinstance(f.get("layers"), h5py.Group) and "vars" in f:
        raise ModelFileError(
            f"{where} is in Keras 3's .weights.h5 layout, which aslnet does not read.  "
            "In Keras, model.save('model.h5') writes a file whose weights "
            "aslnet's model.load_weights takes")


def _read_model_file(f, where):
    """Everything load_model needs, read while the file is open."""
    model_config = _attr_str(f, "model_config")
    if model_config is None:
        _refuse_keras3_weights(f, where)
        hint = (" (it holds weights only: build the model and call model.load_weights)"
                if "layer_names" in f.attrs else "")
        raise ModelFileError(f"No model config found in the file at {where}{hint}.")
    version = _attr_str(f, "keras_version") or ""
    if not version.startswith(("1.", "2.")) and version:
        raise NotImplementedError(
            f"{where} was saved by Keras {version}: aslnet reads the model config of "
            "Keras 2.x h5 files only.  Its weights load: build the same model in aslnet "
            "and call model.load_weights(path)")
    training_config = _attr_str(f, "training_config")
    weights_group = f["model_weights"] if "model_weights" in f else f
    if "layer_names" not in weights_group.attrs and not any(
            k.startswith("layer_names") for k in weights_group.attrs):
        raise ModelFileError(f"{where}: the file has a model config but no weights "
                             "(no model_weights/layer_names)")
    weights = _read_weights_group(weights_group)
    opt = None
    if "optimizer_weights" in f:
        g = f["optimizer_weights"]
        names = _load_attributes(g, "weight_names")
        opt = (names, [np.asarray(g[n]) for n in names])
    return (json.loads(model_config),
            json.loads(training_config) if training_config else None, weights, opt)


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------
def save_model(model, filepath, overwrite=True, include_optimizer=True):
    """Save architecture, weights, trainable flags and (``include_optimizer``
    and compiled) the compile config and optimizer state, atomically."""
    model._require_built()
    if isinstance(filepath, h5py.Group):
        _write_model(filepath, model, include_optimizer)
        return
    _check_saveable(model)
    with _atomic_h5(filepath, overwrite) as f:
        _write_model(f, model, include_optimizer)


def load_model(filepath, compile=True, custom_objects=None):
    """The model saved by ``save_model`` (or tf.keras 2.x's h5 of a chain of
    supported layers), compiled with its saved optimizer state if
    ``compile`` and the file has a training config."""
    with _open_h5(filepath, "model") as (f, where):
        try:
            model_config, training_config, weights, opt = _read_model_file(f, where)
        except (ModelFileError, NotImplementedError):
            raise
        except _READ_ERRORS as e:
            raise ModelFileError(f"Cannot read model file {where}: it is corrupt or not an "
                                 f"aslnet/Keras model ({type(e).__name__}: {e})") from e
    try:
        model = _model_from_config(model_config, custom_objects)
    except (NotImplementedError, ModelFileError):
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise ModelFileError(f"{where}: cannot rebuild the model from its config: "
                             f"{type(e).__name__}: {e}") from e
    _assign_topological(_keras_layers(model), weights, where)
    if compile:
        if training_config is None:
            warnings.warn(f"No training configuration found in the save file {where}, so "
                          "the model was *not* compiled. Compile it manually.", stacklevel=2)
        else:
            try:
                _compile_from_training_config(model, training_config)
            except (ValueError, TypeError, AttributeError, KeyError) as e:
                raise ModelFileError(f"{where}: cannot compile the model from its saved "
                                 f"training configuration: {e} (load it with "
                                 "compile=False and compile it yourself)") from e
            if opt is not None:
                _restore_optimizer_weights(model, *opt, where)
    return model


def save_weights(model, filepath, overwrite=True):
    """Keras's weights-only h5 layout, atomically."""
    layers = _keras_layers(model)
    if isinstance(filepath, h5py.Group):
        _write_weights_group(filepath, layers)
        return
    _check_saveable(model)
    with _atomic_h5(filepath, overwrite) as f:
        _write_weights_group(f, layers)


def load_weights(model, filepath, by_name=False, skip_mismatch=False):
    """Weights from a weights file or a full model file: in topological order
    (layers with weights, in order; the file must come from the same
    architecture), or ``by_name``.  Raises ValueError on a mismatch, before
    changing any weight."""
    if skip_mismatch and not by_name:
        raise ValueError("When calling model.load_weights, skip_mismatch can only be set "
                         "to True when by_name is True.")
    with _open_h5(filepath, "weights") as (f, where):
        try:
            g = f
            if not any(k.startswith("layer_names") for k in f.attrs) and "model_weights" in f:
                g = f["model_weights"]
            if not any(k.startswith("layer_names") for k in g.attrs):
                _refuse_keras3_weights(f, where)
                raise ModelFileError(f"{where} holds no weights (no layer_names attribute)")
            saved = _read_weights_group(g)
        except ModelFileError:
            raise
        except _READ_ERRORS as e:
            raise ModelFileError(f"Cannot read weights file {where}: it is corrupt or not an "
                                 f"aslnet/Keras file ({type(e).__name__}: {e})") from e
    layers = _keras_layers(model)
    if by_name:
        _assign_by_name(layers, saved, where, skip_mismatch)
    else:
        _assign_topological(layers, saved, where)
