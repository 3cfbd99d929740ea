"""Keras's weight initializers, by name, config dict or Keras object
(``kernel_initializer=`` ...): ``_initializer`` checks the argument when
the layer is made, ``_init_value`` draws the array when it is built, from
``aslnet.backend.rng()`` (``aslnet.set_random_seed``)."""
import math

import numpy as np

from .. import backend


def _glorot_uniform(shape, fan_in, fan_out):
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return backend.rng().uniform(-limit, limit, size=shape).astype(np.float32)


# Keras's initializers: name -> (VarianceScaling scale, mode, distribution) or
# a plain rule.  *_normal draw from a normal truncated at 2 standard
# deviations, scaled as Keras does (0.8796... is that truncation's stddev).
_VARIANCE_SCALING = {
    "glorot_uniform": (1.0, "fan_avg", "uniform"), "glorot_normal": (1.0, "fan_avg", "normal"),
    "he_uniform": (2.0, "fan_in", "uniform"), "he_normal": (2.0, "fan_in", "normal"),
    "lecun_uniform": (1.0, "fan_in", "uniform"), "lecun_normal": (1.0, "fan_in", "normal"),
}
_INITIALIZERS = (*_VARIANCE_SCALING, "zeros", "ones", "constant", "random_normal",
                 "random_uniform")
_KERAS_CLASS_NAMES = {"GlorotUniform": "glorot_uniform", "GlorotNormal": "glorot_normal",
                      "HeUniform": "he_uniform", "HeNormal": "he_normal",
                      "LecunUniform": "lecun_uniform", "LecunNormal": "lecun_normal",
                      "Zeros": "zeros", "Ones": "ones", "Constant": "constant",
                      "RandomNormal": "random_normal", "RandomUniform": "random_uniform"}


def _initializer(spec, what):
    """(name, config) of a Keras initializer given by name, config dict or
    Keras initializer object; ValueError for one aslnet does not have."""
    if spec is None:
        return None
    if isinstance(spec, str):
        name, cfg = spec.lower(), {}
    elif isinstance(spec, dict) and "class_name" in spec:
        name, cfg = spec["class_name"], dict(spec.get("config") or {})
    elif hasattr(spec, "get_config"):
        name, cfg = type(spec).__name__, dict(spec.get_config())
    else:
        raise ValueError(f"{what}: unsupported initializer {spec!r}")
    name = _KERAS_CLASS_NAMES.get(name, name)
    name = {"zero": "zeros", "one": "ones", "uniform": "random_uniform",
            "normal": "random_normal"}.get(name, name)
    if name not in _INITIALIZERS:
        raise ValueError(f"{what}: unsupported initializer {spec!r}; aslnet has "
                         f"{sorted(_INITIALIZERS)}")
    if cfg.get("seed") is not None:
        raise ValueError(f"{what}: seeded initializers are not supported; use "
                         "aslnet.set_random_seed")
    return name, cfg


def _init_value(init, shape, fan_in, fan_out, default):
    """A float32 array of ``shape`` drawn from ``init`` (see _initializer),
    or ``default()`` when no initializer was given."""
    if init is None:
        return default()
    name, cfg = init
    rng = backend.rng()
    if name == "zeros":
        v = np.zeros(shape)
    elif name == "ones":
        v = np.ones(shape)
    elif name == "constant":
        v = np.full(shape, float(cfg.get("value", 0.0)))
    elif name == "random_normal":
        v = rng.normal(float(cfg.get("mean", 0.0)), float(cfg.get("stddev", 0.05)), shape)
    elif name == "random_uniform":
        v = rng.uniform(float(cfg.get("minval", -0.05)), float(cfg.get("maxval", 0.05)), shape)
    else:
        scale, mode, dist = _VARIANCE_SCALING[name]
        n = max(1.0, fan_in if mode == "fan_in" else (fan_in + fan_out) / 2.0)
        if dist == "uniform":
            limit = math.sqrt(3.0 * scale / n)
            v = rng.uniform(-limit, limit, shape)
        else:
            std = math.sqrt(scale / n) / 0.87962566103423978
            v = rng.normal(0.0, 1.0, shape)
            bad = np.abs(v) > 2.0
            while bad.any():                          # redraw beyond 2 stddev
                v[bad] = rng.normal(0.0, 1.0, int(bad.sum()))
                bad = np.abs(v) > 2.0
            v = v * std
    return np.asarray(v, np.float32)


def _conv_fans(shape):
    rf = int(np.prod(shape[:-2]))
    return shape[-2] * rf, shape[-1] * rf
