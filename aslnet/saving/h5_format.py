"""Keras 2's h5 layout (tf.keras 2.6's ``hdf5_format``): string-list
attributes (split when longer than an HDF5 object header holds), the
weights groups (``layer_names``, one group per layer with ``weight_names``
and a dataset per weight), a whole model file (``model_config``,
``training_config``, ``model_weights``, ``optimizer_weights``), and weights
read back into layers in topological order or by name."""
import json
import warnings

import h5py
import numpy as np

from ..trainers import quantize
from . import optimizer_state, serialization
from .file_io import ModelFileError
from .serialization import BACKEND, KERAS_VERSION

QUANTIZATION = "aslnet_quantization"   # a quantized model's mode and ranges (JSON)

# HDF5 object headers are limited to 64 KiB; Keras splits longer name lists.
HDF5_OBJECT_HEADER_LIMIT = 64512


# ---------------------------------------------------------------------------
# Attributes and datasets
# ---------------------------------------------------------------------------
def save_attributes(group, name, data):
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


def load_attributes(group, name):
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


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------
def _legacy_weights(layer):
    """Keras's weight order in h5 files: trainable, then non-trainable."""
    return layer.trainable_weights + layer.non_trainable_weights


def write_weights_group(f, layers):
    """Keras's save_weights_to_hdf5_group."""
    save_attributes(f, "layer_names", [l.name.encode("utf8") for l in layers])
    f.attrs["backend"] = BACKEND.encode("utf8")
    f.attrs["keras_version"] = KERAS_VERSION.encode("utf8")
    for layer in sorted(layers, key=lambda l: l.name):
        g = f.create_group(layer.name)
        weights = _legacy_weights(layer)
        names = [w.name.encode("utf8") for w in weights]
        save_attributes(g, "weight_names", names)
        for name, var in zip(names, weights):
            _write_array(g, name.decode("utf8"), var.numpy())


def write_model(f, model, include_optimizer):
    serialization.check_saveable(model)
    f.attrs["keras_version"] = KERAS_VERSION
    f.attrs["backend"] = BACKEND
    f.attrs["model_config"] = serialization.to_json(serialization.model_to_config(model))
    names = getattr(model, "class_names", None)        # an attribute Keras ignores
    if names:
        f.attrs["class_names"] = json.dumps([str(n) for n in names])
    quantization = quantize.state(model)               # (also one)
    if quantization is not None:
        f.attrs[QUANTIZATION] = quantization
    compiled = model.optimizer is not None and model.loss is not None
    if include_optimizer and compiled:
        f.attrs["training_config"] = serialization.to_json(optimizer_state.training_config(model))
    write_weights_group(f.create_group("model_weights"), serialization.keras_layers(model))
    if include_optimizer and compiled:
        opt = optimizer_state.optimizer_weights(model)
        if opt is not None:
            g = f.create_group("optimizer_weights")
            names, values = opt
            save_attributes(g, "weight_names", [n.encode("utf8") for n in names])
            for name, value in zip(names, values):
                _write_array(g, name, value)


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------
def read_weights_group(f):
    """[(layer name, [(weight name, array)])] in the file's layer order."""
    out = []
    for name in load_attributes(f, "layer_names"):
        g = f[name]
        out.append((name, [(w, np.asarray(g[w])) for w in load_attributes(g, "weight_names")]))
    return out


def refuse_keras3_weights(f, where):
    """Keras 3's ``save_weights('x.weights.h5')`` layout: layers/<name>/vars/<i>."""
    if isinstance(f.get("layers"), h5py.Group) and "vars" in f:
        raise ModelFileError(
            f"{where} is in Keras 3's .weights.h5 layout: it holds weights only (no model "
            "config).  Build the model and call model.load_weights(path), or load a "
            ".keras file (model.save('model.keras') in Keras 3)")


def read_quantization(f):
    """The quantized model's state (``trainers.quantize.state``), or None."""
    return _attr_str(f, QUANTIZATION)


def read_class_names(f):
    """The class names saved with the model (``fit`` on a directory), or None."""
    try:
        names = json.loads(_attr_str(f, "class_names") or "null")
    except ValueError:
        return None
    return [str(n) for n in names] if isinstance(names, list) and names else None


def read_model_file(f, where):
    """Everything load_model needs, read while the file is open."""
    model_config = _attr_str(f, "model_config")
    if model_config is None:
        refuse_keras3_weights(f, where)
        hint = (" (it holds weights only: build the model and call model.load_weights)"
                if "layer_names" in f.attrs else "")
        raise ModelFileError(f"No model config found in the file at {where}{hint}.")
    version = _attr_str(f, "keras_version") or ""
    if not version.startswith(("1.", "2.")) and version:
        raise NotImplementedError(
            f"{where} was saved by Keras {version}: aslnet reads the model config of "
            "Keras 2.x h5 files and Keras 3's .keras archives (model.save('model.keras') "
            "in Keras 3).  Its weights load: build the same model in aslnet and call "
            "model.load_weights(path)")
    training_config = _attr_str(f, "training_config")
    weights_group = f["model_weights"] if "model_weights" in f else f
    if "layer_names" not in weights_group.attrs and not any(
            k.startswith("layer_names") for k in weights_group.attrs):
        raise ModelFileError(f"{where}: the file has a model config but no weights "
                             "(no model_weights/layer_names)")
    weights = read_weights_group(weights_group)
    opt = None
    if "optimizer_weights" in f:
        g = f["optimizer_weights"]
        names = load_attributes(g, "weight_names")
        opt = (names, [np.asarray(g[n]) for n in names])
    return (json.loads(model_config),
            json.loads(training_config) if training_config else None, weights, opt)


# ---------------------------------------------------------------------------
# Weights into layers (Keras's load_weights_from_hdf5_group[_by_name])
# ---------------------------------------------------------------------------
def assign_topological(layers, saved, where):
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


def assign_by_name(layers, saved, where, skip_mismatch):
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
