"""Keras 3's files (``keras/src/saving/saving_lib.py``): the ``.keras`` zip
archive and the ``.weights.h5`` layout.

The archive holds ``metadata.json`` (``keras_version``, ``date_saved``),
``config.json`` (``keras3_config``) and ``model.weights.h5``.  That h5 file,
like a ``.weights.h5`` file, is Keras 3's state tree: every saveable object
has a group ``<path>/vars`` (attribute ``name``) whose datasets ``0``,
``1``... are its variables in creation order.  Paths are structural, not
names: the model's own ``vars`` at the root, its layers (``model.layers``:
a Sequential's without its InputLayer) at ``layers/<snake_case(class)>``,
``_1``, ``_2``... for repeats, in order (``layers/conv2d``,
``layers/conv2d_1``, ``layers/re_lu``...), and a compiled model's
optimizer at ``optimizer/vars``: the iteration count (int64), the
learning rate, then for each trainable variable (``model.trainable_variables``
order) its slots (Adam: momentum, velocity; SGD with momentum: momentum).
"""
import datetime
import io
import json
import re
import warnings
import zipfile

import h5py
import numpy as np

from ..trainers import quantize
from . import file_io, keras3_config, serialization
from .file_io import ModelFileError

CONFIG, METADATA, WEIGHTS = "config.json", "metadata.json", "model.weights.h5"
QUANTIZATION = "aslnet_quantization.json"   # a quantized model's mode and ranges
# The Keras release whose files these are checked against (tests/saving).
KERAS3_VERSION = "3.15.1"
# Refuse members claiming more than this uncompressed (a zip bomb): MobileNet's
# weights with Adam state are ~40 MB.
_MAX_MEMBER = 4 << 30
_MAX_CONFIG = 64 << 20


def _snake(name):
    """keras.src.utils.naming.to_snake_case."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def layer_paths(model):
    """[(path, layer)] of ``model.layers`` as saving_lib names them."""
    used, out = {}, []
    for layer in serialization.keras_layers(model):
        base = _snake(type(layer).__name__)
        if base in used:
            used[base] += 1
            path = f"{base}_{used[base]}"
        else:
            used[base] = 0
            path = base
        out.append((f"layers/{path}", layer))
    return out


# ---------------------------------------------------------------------------
# Optimizer variables
# ---------------------------------------------------------------------------
def _slot_count(optimizer):
    if optimizer._core_name == "adam":
        return 2
    if optimizer._core_name == "sgd" and np.float32(optimizer.momentum) > 0:
        return 1
    return 0


def _trainable(model):
    """[(layer, weight index, variable)] in ``model.trainable_variables`` order."""
    return [(layer, j, var) for layer in serialization.keras_layers(model) if layer.trainable
            for j, var in enumerate(layer.weights) if var.trainable]


def _optimizer_values(model):
    state = model.get_optimizer_state()
    values = [np.int64(state["iterations"]),
              np.float32(model.optimizer.learning_rate)]
    for layer, j, var in _trainable(model):
        for k in range(_slot_count(model.optimizer)):
            value = state["slots"].get((layer.name, j, k))
            values.append(np.zeros(var.shape, np.float32) if value is None
                          else np.asarray(value, np.float32).reshape(var.shape))
    return values


def _restore_optimizer(model, values, where):
    """Keras 3's Optimizer.load_own_variables: positional; on a count or
    shape mismatch warn and keep the fresh optimizer."""
    order = _trainable(model)
    nslots = _slot_count(model.optimizer)
    problem = None
    if len(values) != 2 + nslots * len(order):
        problem = (f"the model's optimizer has {2 + nslots * len(order)} variables, the "
                   f"saved one {len(values)}")
    elif np.ndim(values[0]) or np.ndim(values[1]):
        problem = "the iteration count or learning rate is not a scalar"
    elif not (np.isfinite(values[0]) and values[0] >= 0):
        problem = f"the iteration count is {values[0]}"
    else:
        slots, i = {}, 2
        for layer, j, var in order:
            for k in range(nslots):
                if np.shape(values[i]) != var.shape:
                    problem = (f"optimizer variable {i} has shape {np.shape(values[i])}, "
                               f"{layer.name}/{var.name} has {var.shape}")
                    break
                slots[(layer.name, j, k)] = np.asarray(values[i], np.float32)
                i += 1
            if problem:
                break
    if problem:
        warnings.warn(f"{where}: skipping variable loading for optimizer "
                      f"'{model.optimizer.name}' ({problem}); the model starts with a "
                      "freshly initialized optimizer.", stacklevel=4)
        return
    if np.float32(model.optimizer.learning_rate) != np.float32(values[1]):
        # changed since compile (a callback): the variable's value; else the
        # config's, which float32 rounding has not touched
        model.optimizer.learning_rate = float(values[1])
    model.set_optimizer_state({"iterations": int(values[0]), "slots": slots})


# ---------------------------------------------------------------------------
# The state tree (model.weights.h5 / .weights.h5)
# ---------------------------------------------------------------------------
def _vars_group(f, path, name):
    g = f.create_group(f"{path}/vars" if path else "vars")
    g.attrs["name"] = name
    return g


def write_state(f, model, include_optimizer):
    """Keras 3's _save_state of a model into the h5py File ``f``."""
    serialization.refuse_nested(model)
    _vars_group(f, "", model.name)
    f.require_group("layers")
    for path, layer in layer_paths(model):
        g = _vars_group(f, path, layer.name)
        for i, var in enumerate(layer.weights):
            g.create_dataset(str(i), data=var.numpy())
    if include_optimizer and model.optimizer is not None and model.loss is not None:
        g = _vars_group(f, "optimizer", model.optimizer.name)
        for i, value in enumerate(_optimizer_values(model)):
            g.create_dataset(str(i), data=value)


def _read_vars(g):
    n = len(g)
    if set(g.keys()) != {str(i) for i in range(n)}:
        raise ModelFileError(f"bad variable names {sorted(g.keys())} in {g.name}")
    return [np.asarray(g[str(i)]) for i in range(n)]


def is_state_tree(f):
    """Whether an open h5 file is in Keras 3's layout."""
    try:
        return isinstance(f.get("layers"), h5py.Group) and "layer_names" not in f.attrs
    except file_io.READ_ERRORS:
        return False            # the h5 reader says what is wrong


def read_state(f, model, where, by_name=False, skip_mismatch=False):
    """Keras 3's _load_state into an aslnet model: its layers' weights
    (every check before any weight changes), then, for a compiled model,
    the optimizer's variables.  ``by_name`` matches layers by the ``name``
    attribute Keras 3 records, instead of by position and class."""
    serialization.refuse_nested(model)
    try:
        if by_name:
            saved = {}
            for key in f["layers"]:
                g = f["layers"][key].get("vars")
                if isinstance(g, h5py.Group) and "name" in g.attrs:
                    name = g.attrs["name"]
                    saved[name.decode() if isinstance(name, bytes) else str(name)] = g
            plan = [(layer, saved.get(layer.name)) for layer in serialization.keras_layers(model)
                    if layer.name in saved]
        else:
            plan = [(layer, f.get(f"{path}/vars")) for path, layer in layer_paths(model)]
        checked = []
        for layer, g in plan:
            values = _read_vars(g) if isinstance(g, h5py.Group) else []
            problem = None
            if len(values) != len(layer.weights):
                problem = (f"Layer '{layer.name}' expects {len(layer.weights)} variables, "
                           f"but received {len(values)} variables during loading")
            else:
                for var, value in zip(layer.weights, values):
                    if value.shape != var.shape or not np.issubdtype(value.dtype, np.number):
                        problem = (f"Layer '{layer.name}': weight {var.name} has shape "
                                   f"{var.shape}, the saved one {value.shape} "
                                   f"({value.dtype})")
                        break
            if problem:
                if not skip_mismatch:
                    raise ValueError(f"{where}: {problem}.  The file must come from the same "
                                     "architecture (or load with by_name=True, "
                                     "skip_mismatch=True)")
                warnings.warn(f"Skipping loading of weights for layer {layer.name}: "
                              f"{problem}", stacklevel=4)
                continue
            if values:
                checked.append((layer, values))
        opt = None
        g = f.get("optimizer/vars")
        if isinstance(g, h5py.Group) and model.optimizer is not None:
            opt = _read_vars(g)
    except (ModelFileError, ValueError):
        raise
    except file_io.READ_ERRORS as e:
        raise ModelFileError(f"Cannot read the weights of {where}: it is corrupt or not a "
                             f"Keras 3 file ({type(e).__name__}: {e})") from e
    for layer, values in checked:
        layer.set_weights(values)
    if opt is not None:
        _restore_optimizer(model, opt, where)


# ---------------------------------------------------------------------------
# The .keras archive
# ---------------------------------------------------------------------------
def save_archive(model, filepath, overwrite=True, include_optimizer=True):
    serialization.check_saveable(model)
    compiled = include_optimizer and model.optimizer is not None and model.loss is not None
    config = keras3_config.model_to_keras3(
        model, keras3_config.compile_config(model) if compiled else None)
    from .. import __version__
    metadata = {"keras_version": KERAS3_VERSION,
                "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
                "producer": f"aslnet {__version__}"}
    weights = io.BytesIO()
    with h5py.File(weights, "w") as f:
        write_state(f, model, compiled)
    with file_io.atomic_file(filepath, overwrite) as tmp:
        with zipfile.ZipFile(tmp, "w") as zf:
            zf.writestr(METADATA, json.dumps(metadata))
            zf.writestr(CONFIG, serialization.to_json(config).decode("utf8"))
            zf.writestr(WEIGHTS, weights.getvalue())
            quantization = quantize.state(model)     # (a member Keras 3 does not read)
            if quantization is not None:
                zf.writestr(QUANTIZATION, quantization)


def _member(zf, name, where, limit):
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise ModelFileError(f"{where} is a zip archive without {name}: not a Keras 3 "
                             f"model file (it holds {sorted(zf.namelist())[:10]})") from None
    if info.file_size > limit:
        raise ModelFileError(f"{where}: {name} claims {info.file_size} bytes uncompressed, "
                             f"more than the {limit} aslnet reads")
    return zf.read(info)          # checks the CRC-32: a damaged member raises


def _open_archive(filepath, what):
    path = str(filepath)
    try:
        return zipfile.ZipFile(path, "r"), path
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise ModelFileError(f"Cannot read {what} file {path}: a damaged or truncated zip "
                             f"archive ({type(e).__name__}: {e})") from e


def _read_archive(filepath, what):
    """(config, weights bytes, quantization state or None) of a .keras archive, and
    its path, with clear errors."""
    zf, where = _open_archive(filepath, what)
    with zf:
        try:
            names = zf.namelist()
            if WEIGHTS not in names and "model.weights.npz" in names:
                raise NotImplementedError(
                    f"{where} keeps its weights as npz (weights_format='npz'): aslnet reads "
                    "the h5 weights Keras 3 writes by default (save it again without "
                    "weights_format)")
            config = None
            if what == "model":
                config = json.loads(_member(zf, CONFIG, where, _MAX_CONFIG))
            weights = _member(zf, WEIGHTS, where, _MAX_MEMBER)
            quantization = None
            if what == "model" and QUANTIZATION in names:
                quantization = _member(zf, QUANTIZATION, where,
                                       _MAX_CONFIG).decode("utf8", "replace")
        except (ModelFileError, NotImplementedError):
            raise
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError,
                NotImplementedError) as e:
            raise ModelFileError(f"Cannot read {what} file {where}: a damaged or "
                                 f"truncated Keras 3 archive ({type(e).__name__}: "
                                 f"{e})") from e
    return config, weights, quantization, where


def _open_weights(data, where):
    file_io.check_foreign_h5(f"{where} ({WEIGHTS})", data=data)
    try:
        return h5py.File(io.BytesIO(data), "r")
    except (OSError, ValueError) as e:
        raise ModelFileError(f"{where}: its {WEIGHTS} is not a readable HDF5 file "
                             f"({e})") from e


def load_archive(filepath, compile=True, custom_objects=None):
    config, data, quantization, where = _read_archive(filepath, "model")
    try:
        model = keras3_config.model_from_keras3(config, custom_objects)
    except (NotImplementedError, ModelFileError):
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise ModelFileError(f"{where}: cannot rebuild the model from its config: "
                             f"{type(e).__name__}: {e}") from e
    cc = config.get("compile_config") if compile else None
    if cc:
        try:
            keras3_config.compile_from_keras3(model, cc)
        except (ValueError, TypeError, AttributeError, KeyError) as e:
            raise ModelFileError(f"{where}: cannot compile the model from its saved "
                                 f"compile_config: {e} (load it with compile=False and "
                                 "compile it yourself)") from e
    with _open_weights(data, where) as f:
        if not is_state_tree(f):
            raise ModelFileError(f"{where}: its {WEIGHTS} is not in Keras 3's layout (no "
                                 "layers group)")
        read_state(f, model, where)
    if quantization is not None:
        quantize.restore(model, quantization, where)
    return model


def load_archive_weights(model, filepath, by_name=False, skip_mismatch=False):
    """``model.load_weights`` of a .keras archive (as Keras 3 allows)."""
    _, data, _, where = _read_archive(filepath, "weights")
    with _open_weights(data, where) as f:
        read_state(f, model, where, by_name, skip_mismatch)


def save_weights(model, filepath, overwrite=True):
    """Keras 3's ``save_weights('m.weights.h5')``: the state tree, with the
    optimizer's variables when compiled."""
    serialization.check_saveable(model)
    with file_io.atomic_h5(filepath, overwrite) as f:
        write_state(f, model, include_optimizer=True)
