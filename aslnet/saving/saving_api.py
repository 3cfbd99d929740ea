"""The four entry points (``Model.save``/``save_weights``/``load_weights``
and ``models.load_model`` call them): a file written atomically
(``file_io``) in Keras 2's h5 layout (``h5_format``) from the model's config
(``serialization``) and training state (``optimizer_state``), and back; or,
as Keras 3 does for these suffixes, ``.keras`` as Keras 3's zip archive and
``.weights.h5`` in Keras 3's layout (``keras3_format``).  Reading never looks
at the suffix: the content says which format (aslnet's older ``.keras``
files are h5 and still load)."""
import os
import warnings

import h5py

from ..trainers import quantize
from . import file_io, h5_format, keras3_format, optimizer_state, serialization
from .file_io import ModelFileError


def _suffix(filepath, suffix):
    return (not isinstance(filepath, h5py.Group)
            and os.fspath(filepath).lower().endswith(suffix))


def save_model(model, filepath, overwrite=True, include_optimizer=True):
    """Save architecture, weights, trainable flags and (``include_optimizer``
    and compiled) the compile config and optimizer state, atomically."""
    model._require_built()
    if isinstance(filepath, h5py.Group):
        h5_format.write_model(filepath, model, include_optimizer)
        return
    if _suffix(filepath, ".keras"):
        keras3_format.save_archive(model, filepath, overwrite, include_optimizer)
        return
    serialization.check_saveable(model)
    with file_io.atomic_h5(filepath, overwrite) as f:
        h5_format.write_model(f, model, include_optimizer)


def load_model(filepath, compile=True, custom_objects=None):
    """The model saved by ``save_model`` (or tf.keras 2.x's h5 of a chain of
    supported layers), compiled with its saved optimizer state if
    ``compile`` and the file has a training config; or Keras 3's ``.keras``
    archive."""
    if file_io.sniff(filepath, "model") == "zip":
        return keras3_format.load_archive(filepath, compile, custom_objects)
    with file_io.open_h5(filepath, "model") as (f, where):
        try:
            model_config, training_config, weights, opt = h5_format.read_model_file(f, where)
            class_names = h5_format.read_class_names(f)
            quantization = h5_format.read_quantization(f)
        except (ModelFileError, NotImplementedError):
            raise
        except file_io.READ_ERRORS as e:
            raise ModelFileError(f"Cannot read model file {where}: it is corrupt or not an "
                                 f"aslnet/Keras model ({type(e).__name__}: {e})") from e
    try:
        model = serialization.model_from_config(model_config, custom_objects)
    except (NotImplementedError, ModelFileError):
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise ModelFileError(f"{where}: cannot rebuild the model from its config: "
                             f"{type(e).__name__}: {e}") from e
    h5_format.assign_topological(serialization.keras_layers(model), weights, where)
    if class_names is not None and len(class_names) == model.output_shape[-1]:
        model.class_names = class_names
    if quantization is not None:
        quantize.restore(model, quantization, where)
    if compile:
        if training_config is None:
            warnings.warn(f"No training configuration found in the save file {where}, so "
                          "the model was *not* compiled. Compile it manually.", stacklevel=2)
        else:
            try:
                optimizer_state.compile_from_training_config(model, training_config)
            except (ValueError, TypeError, AttributeError, KeyError) as e:
                raise ModelFileError(f"{where}: cannot compile the model from its saved "
                                 f"training configuration: {e} (load it with "
                                 "compile=False and compile it yourself)") from e
            if opt is not None:
                optimizer_state.restore_optimizer_weights(model, *opt, where)
    return model


def save_weights(model, filepath, overwrite=True):
    """Keras's weights-only h5 layout, atomically (Keras 3's for a
    ``.weights.h5`` path, as Keras 3 writes)."""
    if _suffix(filepath, ".weights.h5"):
        keras3_format.save_weights(model, filepath, overwrite)
        return
    layers = serialization.keras_layers(model)
    if isinstance(filepath, h5py.Group):
        h5_format.write_weights_group(filepath, layers)
        return
    serialization.check_saveable(model)
    with file_io.atomic_h5(filepath, overwrite) as f:
        h5_format.write_weights_group(f, layers)


def load_weights(model, filepath, by_name=False, skip_mismatch=False):
    """Weights from a weights file or a full model file: in topological order
    (layers with weights, in order; the file must come from the same
    architecture), or ``by_name``.  Raises ValueError on a mismatch, before
    changing any weight."""
    if skip_mismatch and not by_name:
        raise ValueError("When calling model.load_weights, skip_mismatch can only be set "
                         "to True when by_name is True.")
    if file_io.sniff(filepath, "weights") == "zip":
        keras3_format.load_archive_weights(model, filepath, by_name, skip_mismatch)
        return
    with file_io.open_h5(filepath, "weights") as (f, where):
        if keras3_format.is_state_tree(f):
            keras3_format.read_state(f, model, where, by_name, skip_mismatch)
            return
        try:
            g = f
            if not any(k.startswith("layer_names") for k in f.attrs) and "model_weights" in f:
                g = f["model_weights"]
            if not any(k.startswith("layer_names") for k in g.attrs):
                h5_format.refuse_keras3_weights(f, where)
                raise ModelFileError(f"{where} holds no weights (no layer_names attribute)")
            saved = h5_format.read_weights_group(g)
        except ModelFileError:
            raise
        except file_io.READ_ERRORS as e:
            raise ModelFileError(f"Cannot read weights file {where}: it is corrupt or not an "
                                 f"aslnet/Keras file ({type(e).__name__}: {e})") from e
    layers = serialization.keras_layers(model)
    if by_name:
        h5_format.assign_by_name(layers, saved, where, skip_mismatch)
    else:
        h5_format.assign_topological(layers, saved, where)
