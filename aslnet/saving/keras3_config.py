"""Keras 3's config JSON, both ways.

Keras 3 (``serialize_keras_object``) writes every object as ``{"module",
"class_name", "config", "registered_name"}`` plus, for layers and models,
``build_config`` and ``compile_config``; a functional model's
``inbound_nodes`` are ``{"args": [<__keras_tensor__>...], "kwargs": {}}``.
aslnet keeps one home for what a layer's config means (``serialization``,
tf.keras 2's form): this module only translates between the two forms, so
a Keras 3 config becomes a tf.keras 2 one before ``model_from_config``
rebuilds it, and ``model_to_config``'s output becomes Keras 3's.  Nodes are
translated tensor by tensor, so layers with several inputs (merge layers)
translate as chains do.
"""
import copy

from . import optimizer_state, serialization

# Keys Keras 3's layer configs hold that tf.keras 2.6's do not: the values at
# which they change nothing aslnet computes (anything else is refused).
_KERAS3_ONLY = {
    "optional": (lambda v: not v, "false"),                   # InputLayer
    "renorm": (lambda v: not v, "false"),
    "renorm_clipping": (lambda v: v is None, "null"),
    "renorm_momentum": (lambda v: True, ""),                  # unused without renorm
    "quantization_config": (lambda v: v is None, "null"),     # Dense
    "lora_rank": (lambda v: v is None, "null"),
    "lora_alpha": (lambda v: True, ""),                       # unused without lora_rank
}
# Keras 3's call arguments aslnet's layers take (at values that change nothing).
_NEUTRAL_KWARGS = {"mask": (None,), "training": (None, False)}

_FUNCTIONAL_MODULE = "keras.src.models.functional"


def _policy(name):
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": name},
            "registered_name": None}


def _object(module, cfg):
    """tf.keras 2's ``{"class_name", "config"}`` as Keras 3 writes it."""
    return {"module": module, "class_name": cfg["class_name"],
            "config": cfg.get("config") or {}, "registered_name": None}


# ---------------------------------------------------------------------------
# aslnet -> Keras 3
# ---------------------------------------------------------------------------
def _layer_to_keras3(class_name, cfg):
    cfg = copy.deepcopy(cfg)
    if class_name == "InputLayer":
        cfg["batch_shape"] = list(cfg.pop("batch_input_shape"))
        cfg.pop("sparse", None)
        cfg.pop("ragged", None)
        cfg.update(sparse=False, ragged=False, optional=False)
        return cfg
    if isinstance(cfg.get("dtype"), str):
        cfg["dtype"] = _policy(cfg["dtype"])
    if class_name == "BatchNormalization":
        cfg["axis"] = -1          # aslnet normalises the last (channel) axis
        cfg.setdefault("synchronized", False)   # Keras 3 always writes it
    for key, value in cfg.items():
        if key.endswith("_initializer") and isinstance(value, dict):
            cfg[key] = _object("keras.initializers", value)
    return cfg


def _tensor(model, ref):
    """A Keras 3 ``__keras_tensor__`` for tf.keras 2's ``[layer, node, index]``."""
    layer = model.get_layer(ref[0])
    return {"class_name": "__keras_tensor__",
            "config": {"shape": list(layer.output_shape), "dtype": "float32",
                       "keras_history": [ref[0], ref[1], ref[2]]}}


def model_to_keras3(model, compile_config=None):
    """Keras 3's ``config.json`` object for an aslnet model."""
    serialization.refuse_nested(model)
    k2 = serialization.model_to_config(model)
    kind = k2["class_name"]
    policy = _policy(model.dtype_policy.name)
    layers, input_shape = [], list(model.input_shape)
    for entry in k2["config"]["layers"]:
        cn = entry["class_name"]
        out = {"module": "keras.layers", "class_name": cn,
               "config": _layer_to_keras3(cn, entry["config"]), "registered_name": None}
        if cn != "InputLayer":
            layer = model.get_layer(out["config"]["name"])
            out["build_config"] = {"input_shape": list(layer.input_shape)}
        if kind == "Functional":
            out["name"] = entry["name"]
            out["inbound_nodes"] = [
                {"args": [_tensor(model, node[0])] if len(node) == 1
                 else [[_tensor(model, ref) for ref in node]], "kwargs": {}}
                for node in entry["inbound_nodes"]]
        layers.append(out)
    if kind == "Sequential":
        if layers[0]["class_name"] != "InputLayer":
            raise RuntimeError("internal: a Sequential config without its InputLayer")
        config = {"module": "keras", "class_name": "Sequential",
                  "config": {"name": model.name, "trainable": model.trainable,
                             "dtype": policy, "layers": layers,
                             "build_input_shape": input_shape},
                  "registered_name": None, "build_config": {"input_shape": input_shape}}
    else:
        cfg = k2["config"]
        single = len(cfg["input_layers"]) == 1 and len(cfg["output_layers"]) == 1
        config = {"module": _FUNCTIONAL_MODULE, "class_name": "Functional",
                  "config": {"name": model.name, "trainable": model.trainable,
                             "layers": layers,
                             "input_layers": (cfg["input_layers"][0] if single
                                              else cfg["input_layers"]),
                             "output_layers": (cfg["output_layers"][0] if single
                                               else cfg["output_layers"])},
                  "registered_name": "Functional", "build_config": {"input_shape": None}}
    config["compile_config"] = compile_config
    if compile_config is None:
        del config["compile_config"]
    return config


def compile_config(model):
    """Keras 3's ``compile_config`` (Trainer.get_compile_config) for a
    compiled aslnet model."""
    opt = optimizer_state._keras_optimizer_config(model.optimizer)
    ocfg = dict(opt["config"])
    ocfg["name"] = model.optimizer._core_name
    ocfg.pop("decay", None)                  # tf.keras 2's; Keras 3 has no such argument
    ocfg.update({k: v for k, v in (("weight_decay", None), ("clipnorm", None),
                                   ("global_clipnorm", None), ("clipvalue", None),
                                   ("use_ema", False), ("ema_momentum", 0.99),
                                   ("ema_overwrite_frequency", None),
                                   ("loss_scale_factor", None),
                                   ("gradient_accumulation_steps", None))
                 if k not in ocfg})
    return {"optimizer": {"module": "keras.optimizers", "class_name": opt["class_name"],
                          "config": ocfg, "registered_name": None},
            "loss": model.loss, "loss_weights": None,
            "metrics": list(model.compiled_metrics) or None, "weighted_metrics": None,
            "run_eagerly": False, "steps_per_execution": 1, "jit_compile": False}


# ---------------------------------------------------------------------------
# Keras 3 -> aslnet
# ---------------------------------------------------------------------------
def _layer_from_keras3(class_name, cfg, where):
    if not isinstance(cfg, dict):
        raise ValueError(f"{where}: config is not a JSON object")
    cfg = dict(cfg)
    if class_name == "InputLayer" and "batch_shape" in cfg:
        cfg["batch_input_shape"] = cfg.pop("batch_shape")
    for key in [k for k in cfg if k in _KERAS3_ONLY]:
        ok, expected = _KERAS3_ONLY[key]
        value = cfg.pop(key)
        if not ok(value):
            raise ValueError(f"{where}: {key}={value!r} is not supported by aslnet (only "
                             f"{expected})")
    return cfg


def _refs(obj, where, out):
    """tf.keras 2's ``[layer, node, index, {}]`` for every Keras 3 tensor in
    ``obj`` (a node's args: tensors, or lists of them)."""
    if isinstance(obj, (list, tuple)):
        for o in obj:
            _refs(o, where, out)
    elif isinstance(obj, dict) and obj.get("class_name") == "__keras_tensor__":
        hist = (obj.get("config") or {}).get("keras_history")
        if not isinstance(hist, list) or len(hist) != 3:
            raise ValueError(f"{where}: bad keras_history {hist!r}")
        out.append([hist[0], hist[1], hist[2], {}])
    else:
        raise NotImplementedError(f"{where}: a call argument that is not a tensor "
                                  f"({obj!r}); aslnet's layers take tensors only")
    return out


def _node_from_keras3(node, where):
    if isinstance(node, list):                   # already tf.keras 2's form
        return node
    if not isinstance(node, dict):
        raise ValueError(f"{where}: bad inbound node {node!r}")
    for key, value in (node.get("kwargs") or {}).items():
        if key not in _NEUTRAL_KWARGS or value not in _NEUTRAL_KWARGS[key]:
            raise NotImplementedError(f"{where}: call argument {key}={value!r} is not "
                                      "supported by aslnet")
    return _refs(node.get("args") or [], where, [])


def _io_refs(refs):
    """``input_layers``/``output_layers``: Keras 3 writes one as a flat
    ``[name, 0, 0]``."""
    if isinstance(refs, list) and len(refs) == 3 and isinstance(refs[0], str):
        return [refs]
    return refs


def model_from_keras3(config, custom_objects=None):
    """The aslnet model of a Keras 3 ``config.json`` object (fresh weights)."""
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
        raise ValueError("config.json does not hold a Keras model config")
    class_name = config.get("class_name")
    cfg = config["config"]
    entries = cfg.get("layers")
    if not isinstance(entries, list) or not entries:
        raise ValueError("the model config has no layers")
    layers = []
    for e in entries:
        if not isinstance(e, dict):
            raise ValueError(f"bad layer entry {e!r}")
        cn = e.get("class_name")
        lname = e.get("name") or (e.get("config") or {}).get("name")
        where = f"Layer '{lname}' ({cn})"
        out = {"class_name": cn, "config": _layer_from_keras3(cn, e.get("config"), where)}
        if class_name != "Sequential":
            out["name"] = lname
            out["inbound_nodes"] = [_node_from_keras3(n, where)
                                    for n in (e.get("inbound_nodes") or [])]
        layers.append(out)
    if class_name == "Sequential":
        if layers[0]["class_name"] != "InputLayer" and cfg.get("build_input_shape"):
            first = layers[0]["config"]
            name = f"{first.get('name', 'sequential')}_input"
            layers.insert(0, {"class_name": "InputLayer",
                              "config": {"batch_input_shape": cfg["build_input_shape"],
                                         "name": name}})
        k2 = {"class_name": "Sequential", "config": {"name": cfg.get("name"),
                                                     "layers": layers}}
    elif class_name in ("Functional", "Model"):
        k2 = {"class_name": "Functional",
              "config": {"name": cfg.get("name"), "layers": layers,
                         "input_layers": _io_refs(cfg.get("input_layers")),
                         "output_layers": _io_refs(cfg.get("output_layers"))}}
    else:
        raise NotImplementedError(f"model class {class_name!r} (module "
                                  f"{config.get('module')!r}): aslnet rebuilds Functional "
                                  "and Sequential models only, not subclassed ones")
    model = serialization.model_from_config(k2, custom_objects)
    if cfg.get("trainable") is False:
        model.trainable = False
    return model


def _plain(obj):
    """A Keras 3 serialized object's ``{"class_name", "config"}``."""
    if isinstance(obj, dict) and "class_name" in obj:
        return {"class_name": obj["class_name"], "config": obj.get("config") or {}}
    return obj


def _loss_name(loss):
    if not isinstance(loss, dict):
        return loss
    cfg = loss.get("config") or {}
    if cfg.get("from_logits") or cfg.get("label_smoothing"):
        raise ValueError(f"loss {loss.get('class_name')} with from_logits="
                         f"{cfg.get('from_logits')}, label_smoothing="
                         f"{cfg.get('label_smoothing')} is not supported by aslnet")
    return _plain(loss)


def compile_from_keras3(model, cc):
    """``model.compile`` from Keras 3's ``compile_config``."""
    loss = cc.get("loss")
    if isinstance(loss, (list, tuple)):
        loss = [_loss_name(x) for x in loss]
    elif isinstance(loss, dict) and "class_name" not in loss:
        loss = {k: _loss_name(v) for k, v in loss.items()}
    else:
        loss = _loss_name(loss)
    if cc.get("loss_weights") not in (None, 1, 1.0, [1], [1.0]):
        raise ValueError(f"loss_weights={cc['loss_weights']!r} is not supported by aslnet")
    metrics = [_plain(m) for m in optimizer_state._flatten(cc.get("metrics") or [])]
    weighted = [_plain(m) for m in optimizer_state._flatten(cc.get("weighted_metrics") or [])]
    optimizer_state.compile_from_training_config(model, {
        "loss": loss, "metrics": metrics, "weighted_metrics": weighted,
        "optimizer_config": _plain(cc.get("optimizer"))})
