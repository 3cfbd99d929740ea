"""Keras's ``models``: the functional ``Model``, ``Sequential``, and the
functions that make models from files and configs.

Where things live: the layer graph and weights in ``model.py``; training
and inference in :mod:`aslnet.trainers`; the C network in
:mod:`aslnet.engine`; files in :mod:`aslnet.saving`; recipes
(``fine_tune``, ``recalibrate_batch_norm``) in :mod:`aslnet.recipes`.
"""
from ..recipes.batch_norm import recalibrate_batch_norm
from .cloning import clone_model, model_from_json
from .model import Model
from .sequential import Sequential
from ..saving.serialization import register_model_class

register_model_class("Functional", Model)
register_model_class("Sequential", Sequential)

__all__ = ["Model", "Sequential", "load_model", "model_from_json", "clone_model",
           "recalibrate_batch_norm"]


def load_model(filepath, compile=True, custom_objects=None):
    """A model saved by ``Model.save``: Keras 3's ``.keras`` archive or an h5
    file (aslnet's, or tf.keras 2's)."""
    from ..saving import load_model as _load
    return _load(filepath, compile=compile, custom_objects=custom_objects)
