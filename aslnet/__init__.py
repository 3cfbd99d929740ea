"""aslnet: fine-tune and run MobileNet from Python with Keras's API; the
compute runs in C on oneDNN and OpenBLAS.

    import aslnet
    model = aslnet.load_pretrained("mobilenet", num_classes=10)
    model.compile(optimizer=aslnet.optimizers.Adam(1e-4),
                  loss="categorical_crossentropy", metrics=["accuracy"])
"""
import importlib

from . import _libs  # noqa: F401  (platform checks; loads the C core and its libraries)
from . import _core, backend, callbacks, layers, mixed_precision, models, optimizers
from . import data, utils  # noqa: F401  (aslnet.data.AUTOTUNE, aslnet.utils.image_dataset_from_directory)
from .backend import clear_session, get_num_threads, set_num_threads, set_random_seed
from .layers import Input
from .models import Model, Sequential, load_model

__version__ = "0.1.0"

# Keras's submodules, imported on first use (``import aslnet as keras;
# keras.applications...``) so that ``import aslnet`` stays fast.
_LAZY = ("activations", "applications", "distribution", "initializers", "losses", "metrics",
         "preprocessing", "pretrained", "recipes", "regularizers", "saving", "serving", "utils")

__all__ = ["activations", "applications", "backend", "callbacks", "distribution",
           "initializers", "layers",
           "losses", "metrics", "mixed_precision", "models", "optimizers", "preprocessing",
           "regularizers", "utils", "Input", "Model", "Sequential", "load_model",
           "load_pretrained", "set_num_threads", "get_num_threads", "set_random_seed",
           "clear_session"]


def __getattr__(name):
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    if name == "keras":               # tf.keras -> aslnet: the same surface
        return importlib.import_module(__name__)
    raise AttributeError(
        f"aslnet has no {name}: aslnet is Keras's API (import aslnet as keras; its modules "
        "applications, layers, models, optimizers, losses, metrics, callbacks, "
        "preprocessing, utils, regularizers, initializers, activations, backend), not "
        "TensorFlow's: tf.* functions and tensor ops are not part of it (fit, evaluate and "
        "predict do take tf.data datasets; see README's "
        "Keras API table)")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


# Per pretrained name: where fine_tune unfreezes from by default.  v1: conv_dw_7 (49% of
# the layers, 92% of the weights above it); v2: block_9_expand, the block at the same
# proportions (52% of the layers, 91% of the weights) -- chosen by proportion, not measured.
_FINE_TUNE_FROM = {"mobilenet": "conv_dw_7", "mobilenet_v2": "block_9_expand"}


def load_pretrained(name="mobilenet", num_classes=10, trainable_layers=23, weights="imagenet",
                    input_shape=(224, 224, 3), weights_dir=None):
    """The tutorial's model in one line: ImageNet MobileNet (``name`` 'mobilenet') or
    MobileNetV2 ('mobilenet_v2') cut at its pooled features (v1: what the full model's
    ``layers[-6]`` outputs, the same layers), a new ``num_classes``-way softmax
    ``Dense``, and all but the last ``trainable_layers`` layers frozen.  ``input_shape``
    (None, None, 3) makes a model of any input size."""
    import numbers
    key = name.lower() if isinstance(name, str) else None
    if key not in _FINE_TUNE_FROM:
        raise ValueError(f"Unknown pretrained model {name!r}; available: "
                         f"{', '.join(repr(k) for k in _FINE_TUNE_FROM)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) \
            or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    if trainable_layers is not None and (isinstance(trainable_layers, bool) or
                                         not isinstance(trainable_layers, numbers.Integral)
                                         or trainable_layers < 0):
        raise ValueError("trainable_layers must be None (all trainable) or an integer >= 0, "
                         f"got {trainable_layers!r}")
    from .applications import MobileNet, MobileNetV2
    if input_shape is None:
        input_shape = (224, 224, 3)
    input_shape = tuple(input_shape)
    if key == "mobilenet" and input_shape[:2] in ((128, 128), (160, 160), (192, 192),
                                                  (224, 224)):
        # v1 with its classifier (as Keras can build it at these sizes), cut at
        # layers[-6]: the same layers, and the same random draws as before any-size
        mobile = MobileNet(input_shape=input_shape, weights=weights, weights_dir=weights_dir)
        x = mobile.layers[-6].output
    else:
        base = MobileNet if key == "mobilenet" else MobileNetV2
        mobile = base(input_shape=input_shape, weights=weights, include_top=False,
                      pooling="avg", weights_dir=weights_dir)
        x = mobile.output
    output = layers.Dense(units=int(num_classes), activation="softmax")(x)
    model = Model(inputs=mobile.input, outputs=output)
    model.min_input_size = mobile.min_input_size
    model.fine_tune_from = _FINE_TUNE_FROM[key]
    if trainable_layers is not None and trainable_layers > len(model.layers):
        raise ValueError(f"trainable_layers={trainable_layers} but the model has only "
                         f"{len(model.layers)} layers")
    if trainable_layers is not None:
        model.freeze(upto=-trainable_layers if trainable_layers else None)
    return model
