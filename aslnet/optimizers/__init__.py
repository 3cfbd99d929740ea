"""Keras's optimizers, one module each; the update rules and their state run
in C (csrc/optimizers.c).  ``schedules``: learning-rate schedules."""

__all__ = ["Optimizer", "SGD", "RMSprop", "Adam", "AdamW", "Adagrad", "Nadam", "schedules",
           "get", "serialize", "deserialize"]

from . import schedules
from .adagrad import Adagrad
from .adam import Adam
from .adamw import AdamW
from .nadam import Nadam
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

_CLASSES = {c.__name__.lower(): c for c in (SGD, RMSprop, Adam, AdamW, Adagrad, Nadam)}
_NAMES = "'sgd', 'rmsprop', 'adam', 'adamw', 'adagrad', 'nadam'"


def _class(name):
    return _CLASSES.get(str(name).lower())


def serialize(optimizer):
    """{'class_name', 'config'} (Keras's form)."""
    return {"module": "keras.optimizers", "class_name": type(optimizer).__name__,
            "config": optimizer.get_config(), "registered_name": None}


def deserialize(config):
    """An optimizer from ``serialize``'s dict."""
    cls = _class(config.get("class_name", ""))
    if cls is None:
        raise ValueError(f"Unknown optimizer {config.get('class_name')!r}; aslnet has "
                         f"{_NAMES}")
    return cls.from_config(config.get("config") or {})


def get(identifier):
    """A name ('rmsprop', 'Adam', ...) / an Optimizer / a config dict
    (``serialize``'s, or a flat config whose 'name' is a kind) -> an
    Optimizer, as ``keras.optimizers.get``."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and _class(identifier):
        return _class(identifier)()
    if isinstance(identifier, dict):
        if "class_name" in identifier:
            return deserialize(identifier)
        cls = _class(identifier.get("name", ""))
        if cls:
            return cls.from_config(identifier)
    module = (type(identifier).__module__ or "").split(".")[0]
    hint = (f" (a {module} optimizer: use the aslnet.optimizers class of the same name "
            "and arguments)" if module in ("keras", "tensorflow", "tf_keras", "torch") else "")
    raise ValueError(f"Unknown optimizer {identifier!r}; aslnet has {_NAMES}{hint}")
