"""Models from configs: ``clone_model``, ``model_from_json``."""
import json

__all__ = ["clone_model", "model_from_json"]


def model_from_json(json_string, custom_objects=None):
    """A new model (fresh weights) from ``Model.to_json()`` (or tf.keras's)."""
    from ..saving.serialization import model_from_config
    return model_from_config(json.loads(json_string), custom_objects)


def clone_model(model):
    """Keras's ``clone_model``: the same architecture with new layers and newly
    initialised weights (copy them with ``clone.set_weights(model.get_weights())``)."""
    from ..saving.serialization import model_from_config, model_to_config
    model._require_built()
    return model_from_config(model_to_config(model))
