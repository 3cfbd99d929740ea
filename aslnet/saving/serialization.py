"""Keras's configs, both ways: an aslnet layer's config in tf.keras 2.6's
form (and back, Keras-only keys checked then dropped), a model's
``{"class_name": "Functional" | "Sequential", "config": ...}`` (and the
model rebuilt from one), the JSON encoding of configs.

The model classes come from a registry, not from ``aslnet.models`` (which
imports this package): ``register_model_class("Functional", Model)`` and
``register_model_class("Sequential", Sequential)`` are called where those
classes are defined.  A model's Keras class name is the registered name of
the nearest class in its MRO, so a subclass of ``Sequential`` saves as a
``Sequential`` and any other subclass of ``Model`` as a ``Functional``.
"""
import copy
import inspect
import json

import numpy as np

from .. import layers as layers_mod
from ..layers import InputLayer, Layer

KERAS_VERSION = "2.6.0"
BACKEND = "tensorflow"

# ---------------------------------------------------------------------------
# Model classes
# ---------------------------------------------------------------------------
# The model kinds this module builds from a config, and how: a Sequential
# from its list of layers, a Functional from its input and output tensors.
MODEL_KINDS = ("Functional", "Sequential")
_MODEL_CLASSES = {}     # kind -> class, filled when the model classes are defined


def register_model_class(kind, cls):
    """Make ``cls`` the class that models of ``kind`` ("Functional" or
    "Sequential") are saved as and rebuilt with.  Registering a kind again
    replaces its class (a reloaded module)."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"register_model_class: kind must be one of {MODEL_KINDS} (the "
                         f"model configs aslnet reads and writes), got {kind!r}")
    if not isinstance(cls, type):
        raise TypeError(f"register_model_class: cls must be a class, got {cls!r}")
    _MODEL_CLASSES[kind] = cls
    return cls


def model_kind(model):
    """The model's (or model class's) kind, "Functional" or "Sequential": the
    kind registered for the nearest class in its MRO."""
    cls = model if isinstance(model, type) else type(model)
    for klass in cls.__mro__:
        for kind, registered in _MODEL_CLASSES.items():
            if registered is klass:
                return kind
    raise TypeError(f"{cls.__name__} is not an aslnet model class (no registered "
                    f"base among {sorted(_MODEL_CLASSES)}); save aslnet.models.Model or "
                    "Sequential instances")


def _model_class(kind):
    cls = _MODEL_CLASSES.get(kind)
    if cls is None:
        raise RuntimeError(f"no model class registered for {kind!r}: import aslnet (or "
                           "aslnet.models, which registers Model and Sequential) first")
    return cls


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
    # the layers of issue 14
    "SeparableConv2D": [("filters", None), ("kernel_size", None), ("strides", (1, 1)),
                        ("padding", "valid"), ("data_format", "channels_last"),
                        ("dilation_rate", (1, 1)), ("depth_multiplier", 1),
                        ("activation", "linear"), ("use_bias", True),
                        ("depthwise_initializer", _glorot), ("pointwise_initializer", _glorot),
                        ("bias_initializer", _zeros), ("depthwise_regularizer", None),
                        ("pointwise_regularizer", None), ("bias_regularizer", None),
                        ("activity_regularizer", None), ("depthwise_constraint", None),
                        ("pointwise_constraint", None), ("bias_constraint", None)],
    "MaxPooling2D": [("pool_size", (2, 2)), ("padding", "valid"), ("strides", (2, 2)),
                     ("data_format", "channels_last")],
    "AveragePooling2D": [("pool_size", (2, 2)), ("padding", "valid"), ("strides", (2, 2)),
                         ("data_format", "channels_last")],
    "LeakyReLU": [("negative_slope", 0.3)],
    "Softmax": [("axis", -1)],
    "Rescaling": [("scale", None), ("offset", 0.0)],
    "Resizing": [("height", None), ("width", None), ("interpolation", "bilinear"),
                 ("crop_to_aspect_ratio", False), ("data_format", "channels_last")],
    "CenterCrop": [("height", None), ("width", None), ("data_format", "channels_last")],
    "RandomFlip": [("mode", "horizontal_and_vertical"), ("seed", None)],
    "RandomRotation": [("factor", None), ("fill_mode", "reflect"), ("interpolation", "bilinear"),
                       ("seed", None), ("fill_value", 0.0)],
    "RandomZoom": [("height_factor", None), ("width_factor", None), ("fill_mode", "reflect"),
                   ("interpolation", "bilinear"), ("seed", None), ("fill_value", 0.0)],
    "RandomTranslation": [("height_factor", None), ("width_factor", None),
                          ("fill_mode", "reflect"), ("interpolation", "bilinear"),
                          ("seed", None), ("fill_value", 0.0)],
    "RandomContrast": [("factor", None), ("value_range", (0, 255)), ("seed", None)],
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
    "antialias": (lambda v: not v, "false"),                  # Resizing
    "pad_to_aspect_ratio": (lambda v: not v, "false"),
    "fill_mode": (lambda v: v in (None, "constant"), "'constant'"),
    "fill_value": (_any, ""),
}
for _k in ("kernel", "bias", "depthwise", "pointwise", "beta", "gamma", "moving_mean",
           "moving_variance"):
    _KERAS_ONLY[_k + "_initializer"] = (_any, "")    # weights come from the file
for _k in ("kernel", "bias", "depthwise", "pointwise", "beta", "gamma", "activity"):
    _KERAS_ONLY[_k + "_regularizer"] = (_is_none, "null")
for _k in ("kernel", "bias", "depthwise", "pointwise", "beta", "gamma"):
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
def _is_model(layer):
    return hasattr(layer, "_keras_layers")


def refuse_nested(model):
    """Keras 3's ``.keras`` archive and ``.weights.h5`` of a model that nests
    another model are not written yet (the h5 format is): a clear
    NotImplementedError instead of a wrong file."""
    nested = [l.name for l in getattr(model, "_keras_layers", ()) if _is_model(l)]
    if nested:
        raise NotImplementedError(
            f"Model '{model.name}' nests the model(s) {nested} (a model used as a layer): "
            "aslnet does not write or read Keras 3's .keras archive or .weights.h5 of a "
            "nested model yet.  Save it as HDF5 (model.save('model.h5'), "
            "model.save_weights('model_weights.h5')), which Keras reads")


def keras_layers(model):
    """The layers Keras lists in ``model.layers`` (a Sequential hides its input;
    a nested model is one entry)."""
    layers = model._keras_layers
    return layers[1:] if model_kind(model) == "Sequential" else list(layers)


def check_saveable(model):
    names = [l.name for l in model._layers]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"Model '{model.name}' has several layers named {dup}; layer "
                         "names must be unique to be saved")
    bad = [n for n in names if not n or "/" in n]
    if bad:
        raise ValueError(f"Layer names {bad} cannot be saved (empty or containing '/')")


def _entry(layer, dtype):
    """{"class_name", "config"} of a layer of a model config: a nested model's
    is its own model config (tf.keras 2 writes "Functional" / "Sequential")."""
    if _is_model(layer):
        return model_to_config(layer)
    return {"class_name": type(layer).__name__, "config": _keras_layer_config(layer, dtype)}


def model_to_config(model):
    layers = model._keras_layers
    dtype = _keras_dtype(model.dtype_policy)
    if model_kind(model) == "Sequential":
        return {"class_name": "Sequential",
                "config": {"name": model.name,
                           "layers": [_entry(l, dtype) for l in layers]}}
    entries = []
    for i, layer in enumerate(layers):
        kwargs = {}
        if not i:
            inputs = ()
        elif _is_model(layer):                      # its node: its output tensor here
            node = model._nodes[layer]
            inputs = (node._inbound,)
            if node._training is False:
                kwargs = {"training": False}
        else:
            inputs = layer.output._inputs
        entries.append({**_entry(layer, dtype), "name": layer.name,
                        "inbound_nodes": [[[t._layer.name, 0, 0, kwargs] for t in inputs]]
                        if inputs else []})
    return {"class_name": "Functional",
            "config": {"name": model.name, "layers": entries,
                       "input_layers": [[layers[0].name, 0, 0]],
                       "output_layers": [[layers[-1].name, 0, 0]]}}


def _graph_from_functional(cfg):
    """The layer entries of a Functional config, input first, in the file's
    order (Keras writes ``layers`` in the model's order), each with the names
    of the layers it reads: [(entry, [input names])].  Only graphs of one
    input and one output whose layers are each called once."""
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
            raise NotImplementedError(f"aslnet models call each layer once; {what} {ref!r} "
                                      "refers to a shared layer")
        return ref[0]

    inp = single(cfg.get("input_layers"), "input")
    out = single(cfg.get("output_layers"), "output")
    reads, calls = {}, {}
    for name, e in by_name.items():
        nodes = e.get("inbound_nodes") or []
        if name == inp:
            if nodes:
                raise ValueError(f"model_config: the input layer '{name}' has inbound nodes")
            reads[name] = []
            continue
        if not isinstance(nodes, list) or not nodes:
            raise ValueError(f"model_config: layer '{name}' has no inbound node")
        if len(nodes) != 1:
            raise NotImplementedError(f"aslnet models call each layer once: layer '{name}' is "
                                      f"called {len(nodes)} times (a shared layer)")
        node = nodes[0]
        if isinstance(node, dict):
            raise NotImplementedError(f"layer '{name}': this inbound-node format is not "
                                      "supported (Keras 2.x h5 files only)")
        if not isinstance(node, list) or not node:
            raise ValueError(f"model_config: layer '{name}' has a bad inbound node {node!r}")
        reads[name] = []
        for ref in node:
            if not isinstance(ref, list) or len(ref) < 3 or ref[0] not in by_name:
                raise ValueError(f"model_config: layer '{name}' has a bad inbound node "
                                 f"{node!r}")
            kwargs = ref[3] if len(ref) > 3 and ref[3] else {}
            if e.get("class_name") in NESTED_KINDS and isinstance(kwargs, dict) and \
                    set(kwargs) <= {"training"} and kwargs.get("training") in (None, False):
                calls[name] = kwargs.get("training")    # a nested model(x, training=False)
                kwargs = {}
            if ref[1] != 0 or ref[2] != 0 or kwargs:
                raise NotImplementedError(f"aslnet models call each layer once: layer "
                                          f"'{name}' takes {ref!r} (a shared layer, a "
                                          "multi-output layer or call arguments)")
            reads[name].append(ref[0])
    needed, todo = set(), [out]           # the layers the output is computed from
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo.extend(reads[name])
    if inp not in needed:
        raise ValueError("model_config: the output is not computed from the input")
    if len(needed) != len(entries):
        extra = sorted(set(by_name) - needed)
        raise NotImplementedError(f"aslnet models have one input and one output; layers "
                                  f"{extra} do not lead to the output")
    order, done = [], set()               # the file's order, each layer after its inputs
    pending = [n for n in by_name]
    while pending:
        ready = [n for n in pending if all(r in done for r in reads[n])]
        if not ready:
            raise ValueError(f"model_config: cycle through layers {pending}")
        for n in ready:
            order.append(n)
            done.add(n)
        pending = [n for n in pending if n not in done]
    if order[0] != inp:
        raise ValueError("the model's first layer is not its InputLayer")
    return [(by_name[n], reads[n], calls.get(n)) for n in order]


NESTED_KINDS = ("Functional", "Model", "Sequential")   # a model as a layer of a config


def _make_layer(class_name, kcfg, layer_name, custom_objects):
    if class_name in NESTED_KINDS:                  # a nested model
        return model_from_config({"class_name": class_name, "config": kcfg},
                                 custom_objects), None
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


def model_from_config(model_config, custom_objects=None):
    if not isinstance(model_config, dict) or "config" not in model_config:
        raise ValueError("model_config is not a Keras model config")
    class_name = model_config.get("class_name")
    cfg = model_config["config"]
    reads = None
    if class_name in ("Functional", "Model"):
        graph = _graph_from_functional(cfg)
        entries = [(e.get("class_name"), e.get("config"), e.get("name")
                    or (e.get("config") or {}).get("name")) for e, _, _ in graph]
        reads = [r for _, r, _ in graph]
        calls = [c for _, _, c in graph]
    elif class_name == "Sequential":
        raw = cfg.get("layers") if isinstance(cfg, dict) else cfg
        if not isinstance(raw, list) or not raw:
            raise ValueError("model_config has no layers")
        entries = [(e.get("class_name"), e.get("config"), (e.get("config") or {}).get("name"))
                   for e in raw]
        if entries[0][0] in NESTED_KINDS:            # Sequential([base, ...]): base's input
            entries.insert(0, ("InputLayer", _nested_input_config(entries[0]),
                               f"{entries[0][2]}_input"))
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
        model = _model_class("Sequential")(built, name=name)
    else:
        out = {built[0].name: built[0].output}
        for layer, names, training in zip(built[1:], reads[1:], calls[1:]):
            args = [out[n] for n in names]
            if layer._num_inputs == 1 and len(args) != 1:
                raise NotImplementedError(
                    f"aslnet models are chains with residual adds: layer '{layer.name}' "
                    f"({type(layer).__name__}) takes one input, the file gives it {names}")
            arg = args if layer._num_inputs > 1 else args[0]
            x = out[layer.name] = layer(arg, training=False) if training is False \
                else layer(arg)
        model = _model_class("Functional")(built[0].output, x, name=name)
    policies = {_policy_name((kcfg or {}).get("dtype")) for cn, kcfg, _ in entries[1:]
                if cn not in NESTED_KINDS}
    if len(policies) == 1:   # as saved (Keras restores each layer's policy; aslnet's is
        model.dtype_policy = policies.pop()   # per model: only when all layers agree)
    for layer, axis in axes:
        rank = len(layer._in_shape)
        if axis not in (-1, rank):
            raise ValueError(f"Layer '{layer.name}': aslnet's BatchNormalization normalises "
                             f"the channel axis ({rank} or -1), got axis={axis}")
    return model


def _nested_input_config(entry):
    """The InputLayer config of a Sequential whose first layer is a model:
    that model's own input (its config's first layer)."""
    class_name, kcfg, name = entry
    layers = (kcfg or {}).get("layers") or []
    first = (layers[0] or {}).get("config") if layers and isinstance(layers[0], dict) else None
    if not layers or layers[0].get("class_name") != "InputLayer" or not first:
        first = (layers[0] or {}).get("config") if layers else None
        if not first or "batch_input_shape" not in first:
            raise ValueError(f"aslnet needs the input shape of nested model '{name}' (no "
                             "InputLayer or batch_input_shape in the file)")
    return {"batch_input_shape": first["batch_input_shape"], "name": f"{name}_input"}


# ---------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------
def json_default(obj):
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


def to_json(obj):
    return json.dumps(obj, default=json_default).encode("utf8")

