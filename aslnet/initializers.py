"""Keras's ``initializers``: classes and names for ``kernel_initializer=``
and friends (the layers read their class name and config; the drawing rule
is ``aslnet.layers.initializers``, seeded by ``aslnet.set_random_seed``)."""
from .layers.initializers import _KERAS_CLASS_NAMES, _conv_fans, _init_value, _initializer

__all__ = ["Initializer", "GlorotUniform", "GlorotNormal", "HeUniform", "HeNormal",
           "LecunUniform", "LecunNormal", "Zeros", "Ones", "Constant", "RandomNormal",
           "RandomUniform", "get"]


class Initializer:
    """Keras's ``Initializer``: ``init(shape)`` draws a float32 array."""

    def __init__(self, seed=None, **config):
        if seed is not None:
            raise NotImplementedError(f"{type(self).__name__}(seed={seed!r}): seeded "
                                      "initializers are not supported; use "
                                      "aslnet.set_random_seed")
        self._config = config

    def get_config(self):
        """The constructor's arguments as a dict (Keras's ``get_config``)."""
        return dict(self._config)

    @classmethod
    def from_config(cls, config):
        """Build the initializer from the dict ``get_config`` returned."""
        return cls(**config)

    def __call__(self, shape, dtype=None):
        shape = tuple(int(s) for s in shape)
        fan_in, fan_out = _conv_fans(shape) if len(shape) >= 2 else (shape[0], shape[0])
        return _init_value(_initializer(self, type(self).__name__), shape, fan_in, fan_out,
                           None)


def _make(cls_name, doc, **defaults):
    def __init__(self, *args, seed=None, **kwargs):
        cfg = dict(defaults)
        cfg.update(zip(defaults, args))
        cfg.update(kwargs)
        Initializer.__init__(self, seed=seed, **cfg)
    doc += ("\n\nKeras's ``seed=`` is refused (``NotImplementedError``): seed with "
            ":func:`aslnet.set_random_seed`.")
    return type(cls_name, (Initializer,), {"__init__": __init__, "__doc__": doc})


_FANS = "``fan_in``/``fan_out`` are the kernel's input/output units (times the receptive field)."
GlorotUniform = _make("GlorotUniform", "Keras's ``GlorotUniform`` (Xavier): uniform in "
                      "``[-limit, limit]``, ``limit = sqrt(6 / (fan_in + fan_out))``. " + _FANS)
GlorotNormal = _make("GlorotNormal", "Keras's ``GlorotNormal``: truncated normal around 0 with "
                     "``stddev = sqrt(2 / (fan_in + fan_out))``. " + _FANS)
HeUniform = _make("HeUniform", "Keras's ``HeUniform``: uniform in ``[-limit, limit]``, "
                  "``limit = sqrt(6 / fan_in)``. " + _FANS)
HeNormal = _make("HeNormal", "Keras's ``HeNormal``: truncated normal around 0 with "
                 "``stddev = sqrt(2 / fan_in)``. " + _FANS)
LecunUniform = _make("LecunUniform", "Keras's ``LecunUniform``: uniform in ``[-limit, limit]``, "
                     "``limit = sqrt(3 / fan_in)``. " + _FANS)
LecunNormal = _make("LecunNormal", "Keras's ``LecunNormal``: truncated normal around 0 with "
                    "``stddev = sqrt(1 / fan_in)``. " + _FANS)
Zeros = _make("Zeros", "Keras's ``Zeros``: all zeros.")
Ones = _make("Ones", "Keras's ``Ones``: all ones.")
Constant = _make("Constant", "Keras's ``Constant``: every value ``value`` (default 0.0).",
                 value=0.0)
RandomNormal = _make("RandomNormal", "Keras's ``RandomNormal``: normal with ``mean`` (default "
                     "0.0) and ``stddev`` (default 0.05).", mean=0.0, stddev=0.05)
RandomUniform = _make("RandomUniform", "Keras's ``RandomUniform``: uniform in ``[minval, "
                      "maxval)`` (defaults -0.05, 0.05).", minval=-0.05, maxval=0.05)
_CLASSES = {c.__name__: c for c in (GlorotUniform, GlorotNormal, HeUniform, HeNormal,
                                    LecunUniform, LecunNormal, Zeros, Ones, Constant,
                                    RandomNormal, RandomUniform)}
assert set(_CLASSES) == set(_KERAS_CLASS_NAMES)
# Keras's lower-case aliases
glorot_uniform, glorot_normal, he_uniform, he_normal = (GlorotUniform, GlorotNormal,
                                                        HeUniform, HeNormal)
lecun_uniform, lecun_normal, zeros, ones, constant = (LecunUniform, LecunNormal, Zeros, Ones,
                                                      Constant)
random_normal, random_uniform = RandomNormal, RandomUniform


def get(identifier):
    """A name, config dict or Initializer -> an Initializer."""
    if identifier is None or isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, dict):
        return _CLASSES[identifier["class_name"]].from_config(identifier.get("config") or {})
    name, cfg = _initializer(identifier, "initializers.get")
    cls = next(c for c, n in _KERAS_CLASS_NAMES.items() if n == name)
    return _CLASSES[cls](**cfg)


def __getattr__(name):
    raise AttributeError(f"aslnet.initializers has no {name}: aslnet has "
                         f"{', '.join(sorted(_CLASSES))} (see README's Keras API table)")
