"""What a model file keeps of training: the ``training_config`` (loss,
metrics and the optimizer's config in tf.keras 2.6's form, and the model
compiled back from it) and the optimizer's state (``optimizer_weights``:
the iteration count, then each slot of each trainable weight in tf.keras's
order and names)."""
import inspect
import warnings

import numpy as np

from .. import optimizers as optimizers_mod


# ---------------------------------------------------------------------------
# Training config
# ---------------------------------------------------------------------------
# (Keras class name, [(key, default)] in tf.keras 2.6's get_config order)
_KERAS_OPTIMIZERS = {
    "adam": ("Adam", [("learning_rate", 0.001), ("decay", 0.0), ("beta_1", 0.9),
                      ("beta_2", 0.999), ("epsilon", 1e-7), ("amsgrad", False)]),
    "adamw": ("AdamW", [("learning_rate", 0.001), ("decay", 0.0), ("weight_decay", 0.004),
                        ("beta_1", 0.9), ("beta_2", 0.999), ("epsilon", 1e-7),
                        ("amsgrad", False)]),
    "sgd": ("SGD", [("learning_rate", 0.01), ("decay", 0.0), ("momentum", 0.0),
                    ("nesterov", False)]),
    "rmsprop": ("RMSprop", [("learning_rate", 0.001), ("decay", 0.0), ("rho", 0.9),
                            ("momentum", 0.0), ("epsilon", 1e-7), ("centered", False)]),
    "adagrad": ("Adagrad", [("learning_rate", 0.001), ("decay", 0.0),
                            ("initial_accumulator_value", 0.1), ("epsilon", 1e-7)]),
    "nadam": ("Nadam", [("learning_rate", 0.001), ("decay", 0.0), ("beta_1", 0.9),
                        ("beta_2", 0.999), ("epsilon", 1e-7)]),
}
# Keys tf.keras 2.6 files carry only when set (written only when not None).
_OPTIONAL_KEYS = ("weight_decay", "clipnorm", "clipvalue", "global_clipnorm")
# Keys of newer configs (tf.keras 2.11+, Keras 3) passed to the constructor,
# which takes them at their neutral value (or Keras 2's decay) only.
_BASE_KEYS = ("decay", "use_ema", "ema_momentum", "ema_overwrite_frequency",
              "loss_scale_factor", "gradient_accumulation_steps", "jit_compile",
              "is_legacy_optimizer")


def _keras_optimizer_config(optimizer):
    cfg = optimizer.get_config()
    kind = optimizer._core_name
    class_name, keys = _KERAS_OPTIMIZERS[kind]
    out = {"name": class_name}
    for key, default in keys:
        out[key] = cfg.get(key, default)
    if isinstance(out["learning_rate"], dict):          # tf.keras 2's schedule form
        out["learning_rate"] = {"class_name": out["learning_rate"]["class_name"],
                                "config": out["learning_rate"]["config"]}
    for key in _OPTIONAL_KEYS:
        if cfg.get(key) is not None and key not in out:
            out[key] = cfg[key]
    return {"class_name": class_name, "config": out}


def _optimizer_from_keras(oc):
    """An optimizer from a file's optimizer_config (tf.keras 2.x, also the
    2.11+ optimizers' configs, or Keras 3's)."""
    if isinstance(oc, str):
        return optimizers_mod.get(oc)
    if not isinstance(oc, dict) or "class_name" not in oc:
        raise ValueError(f"bad optimizer_config {oc!r}")
    class_name = str(oc["class_name"]).split(">")[-1]      # "Custom>Adam" (tf.keras 2.11+)
    cls = optimizers_mod._class(class_name)
    if cls is None:
        raise ValueError(f"Unsupported optimizer {class_name!r}: aslnet has "
                         f"{optimizers_mod._NAMES} (load with compile=False and compile the "
                         "model yourself)")
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"}
    cfg = dict(oc.get("config") or {})
    cfg.pop("name", None)
    if "lr" in cfg:
        cfg.setdefault("learning_rate", cfg.pop("lr"))
    out = {}
    for key, value in cfg.items():
        if key in accepted or key in _BASE_KEYS:
            out[key] = value
        elif value is not None:
            raise ValueError(f"optimizer {class_name}: unsupported option {key}={value!r}")
    if isinstance(out.get("learning_rate"), dict):
        out["learning_rate"] = optimizers_mod.schedules.deserialize(out["learning_rate"])
    try:
        return cls(**out)
    except (NotImplementedError, TypeError) as e:
        raise ValueError(f"optimizer {class_name} of the file: {e} (load with compile=False "
                         "and compile the model yourself)") from None


_METRIC_FNS = {"accuracy": None, "acc": None, "categorical_accuracy": "categorical_accuracy",
               "sparse_categorical_accuracy": "sparse_categorical_accuracy"}


def _keras_metric(name, loss):
    fn = _METRIC_FNS.get(name) or ("sparse_categorical_accuracy"
                                   if loss == "sparse_categorical_crossentropy"
                                   else "categorical_accuracy")
    return {"class_name": "MeanMetricWrapper",
            "config": {"name": name, "dtype": "float32", "fn": fn}}


def training_config(model):
    metrics = [_keras_metric(m, model.loss) for m in model.compiled_metrics]
    return {"loss": model.loss, "metrics": metrics or None, "weighted_metrics": None,
            "loss_weights": None, "optimizer_config": _keras_optimizer_config(model.optimizer)}


def _flatten(obj):
    if isinstance(obj, (list, tuple)):
        return [x for o in obj for x in _flatten(o)]
    if isinstance(obj, dict) and "class_name" not in obj and "config" not in obj:
        return [x for o in obj.values() for x in _flatten(o)]   # {output_name: ...}
    return [obj]


def compile_from_training_config(model, tc):
    loss = tc.get("loss")
    losses = _flatten(loss)
    if len(losses) != 1:
        raise ValueError(f"aslnet models have one loss; the file has {loss!r}")
    loss = losses[0]              # a name or a Keras loss config: aslnet.losses reads both
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
    return optimizer._slots()


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


def optimizer_weights(model):
    """(names, values) of ``optimizer_weights``, or None when the optimizer
    has no state yet (as tf.keras before the first step)."""
    state = model.get_optimizer_state()
    slots = state["slots"]
    iterations = int(state["iterations"])
    if iterations == 0 and not any(np.any(v) for v in slots.values()):
        return None
    optimizer = model.optimizer
    prefix = _KERAS_OPTIMIZERS[optimizer._core_name][0]
    names, values = [f"{prefix}/iter:0"], [np.int64(iterations)]
    if optimizer._keras2_scalars:                 # Nadam's momentum_cache
        scalars = optimizer._keras2_scalar_values(iterations)
        for name in optimizer._keras2_scalars:
            names.append(f"{prefix}/{name}:0")
            values.append(np.float32(scalars[name]))
    for layer, j, k, var, slot in _slot_order(model):
        value = slots.get((layer.name, j, k))
        if value is None:
            raise RuntimeError(f"internal: no optimizer slot {slot} for {var.name}")
        names.append(f"{prefix}/{_var_base(var)}/{slot}:0")
        values.append(np.asarray(value, np.float32).reshape(var.shape))
    return names, values


def restore_optimizer_weights(model, names, values, where):
    """Positional, as tf.keras: iterations, then the slots in _slot_order.
    On a mismatch, warn and keep a fresh optimizer (as tf.keras does)."""
    order = _slot_order(model)
    problem = None
    scalars = model.optimizer._keras2_scalars
    if names and len(names) > len(scalars) and all(
            n.endswith(f"/{s}:0") and np.ndim(v) == 0
            for n, v, s in zip(names[1:], values[1:], scalars)):
        # Keras 2's scalar weights after iter (not read back: see nadam.py)
        names = names[:1] + names[1 + len(scalars):]
        values = values[:1] + values[1 + len(scalars):]
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


