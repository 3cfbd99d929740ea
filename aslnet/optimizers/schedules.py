"""Keras 3's learning-rate schedules (keras/src/optimizers/schedules/
learning_rate_schedule.py): callables of the optimizer's step count
(``iterations``, 0 before the first step), evaluated in float32 as Keras
evaluates them.  The optimizer calls one before every training step and
sends its value to the C core (trainers/trainer.py ``_train_batch``)."""

__all__ = ["LearningRateSchedule", "ExponentialDecay", "PiecewiseConstantDecay",
           "PolynomialDecay", "InverseTimeDecay", "CosineDecay", "serialize", "deserialize"]

import math

import numpy as np

_f32 = np.float32


def _positive_steps(value, what="decay_steps"):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or \
            not value > 0 or not math.isfinite(value):
        raise ValueError(f"Argument `{what}` must be > 0. Received: {what}={value!r}")


def _number(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or \
            not math.isfinite(value):
        raise ValueError(f"Argument `{what}` must be a finite number. Received: "
                         f"{what}={value!r}")


class LearningRateSchedule:
    """Base of schedules: ``__call__(step)`` and ``get_config()``; subclass it
    for your own (as in Keras)."""

    def __call__(self, step):
        raise NotImplementedError(f"Learning rate schedule '{type(self).__name__}' "
                                  "must override `__call__(self, step)`.")

    def get_config(self):
        raise NotImplementedError(f"Learning rate schedule '{type(self).__name__}' "
                                  "must override `get_config()` in order to be serializable.")

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class ExponentialDecay(LearningRateSchedule):
    """initial_learning_rate * decay_rate ** (step / decay_steps) (floored
    exponent if staircase)."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="ExponentialDecay"):
        _number(initial_learning_rate, "initial_learning_rate")
        _positive_steps(decay_steps)
        _number(decay_rate, "decay_rate")
        self.initial_learning_rate, self.decay_steps = initial_learning_rate, decay_steps
        self.decay_rate, self.staircase, self.name = decay_rate, staircase, name

    def __call__(self, step):
        p = _f32(step) / _f32(self.decay_steps)
        if self.staircase:
            p = np.floor(p)
        return _f32(self.initial_learning_rate) * np.power(_f32(self.decay_rate), p)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase, "name": self.name}


class PiecewiseConstantDecay(LearningRateSchedule):
    """values[0] while step <= boundaries[0], values[i] while
    boundaries[i-1] < step <= boundaries[i], values[-1] after."""

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        if len(boundaries) != len(values) - 1:
            raise ValueError("The length of boundaries should be 1 less than the length of "
                             f"values. Received: boundaries={boundaries} of length "
                             f"{len(boundaries)}, and values={values} of length {len(values)}.")
        for v in values:
            _number(v, "values")
        if any(b2 < b1 for b1, b2 in zip(boundaries, boundaries[1:])):
            raise ValueError(f"boundaries must be increasing. Received: {boundaries}")
        self.boundaries, self.values, self.name = list(boundaries), list(values), name

    def __call__(self, step):
        for b, v in zip(self.boundaries, self.values):
            if step <= b:
                return _f32(v)
        return _f32(self.values[-1])

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


class PolynomialDecay(LearningRateSchedule):
    """(initial - end) * (1 - step / decay_steps) ** power + end, the step
    held at decay_steps (or, with cycle, decay_steps stretched to the next
    multiple past the step)."""

    def __init__(self, initial_learning_rate, decay_steps, end_learning_rate=0.0001,
                 power=1.0, cycle=False, name="PolynomialDecay"):
        _number(initial_learning_rate, "initial_learning_rate")
        _positive_steps(decay_steps)
        _number(end_learning_rate, "end_learning_rate")
        _number(power, "power")
        self.initial_learning_rate, self.decay_steps = initial_learning_rate, decay_steps
        self.end_learning_rate, self.power, self.cycle = end_learning_rate, power, cycle
        self.name = name

    def __call__(self, step):
        s, ds = _f32(step), _f32(self.decay_steps)
        if self.cycle:
            ds = ds * (_f32(1.0) if s == 0 else np.ceil(s / ds))
        else:
            s = min(s, ds)
        p = s / ds
        return ((_f32(self.initial_learning_rate) - _f32(self.end_learning_rate)) *
                np.power(_f32(1) - p, _f32(self.power)) + _f32(self.end_learning_rate))

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "end_learning_rate": self.end_learning_rate,
                "power": self.power, "cycle": self.cycle, "name": self.name}


class InverseTimeDecay(LearningRateSchedule):
    """initial_learning_rate / (1 + decay_rate * step / decay_steps)
    (floored ratio if staircase)."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="InverseTimeDecay"):
        _number(initial_learning_rate, "initial_learning_rate")
        _positive_steps(decay_steps)
        _number(decay_rate, "decay_rate")
        self.initial_learning_rate, self.decay_steps = initial_learning_rate, decay_steps
        self.decay_rate, self.staircase, self.name = decay_rate, staircase, name

    def __call__(self, step):
        p = _f32(step) / _f32(self.decay_steps)
        if self.staircase:
            p = np.floor(p)
        return _f32(self.initial_learning_rate) / (_f32(1) + _f32(self.decay_rate) * p)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase, "name": self.name}


class CosineDecay(LearningRateSchedule):
    """Cosine decay from initial_learning_rate (or, with warmup_target, a
    linear warmup over warmup_steps to warmup_target, then the cosine decay
    from it) down to alpha times it over decay_steps, held there after."""

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay",
                 warmup_target=None, warmup_steps=0):
        _number(initial_learning_rate, "initial_learning_rate")
        _positive_steps(decay_steps)
        _number(alpha, "alpha")
        if warmup_target is not None:
            _number(warmup_target, "warmup_target")
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, (int, float, np.number)) \
                or not warmup_steps >= 0:
            raise ValueError(f"Argument `warmup_steps` must be >= 0. Received: "
                             f"warmup_steps={warmup_steps!r}")
        self.initial_learning_rate, self.decay_steps = initial_learning_rate, decay_steps
        self.alpha, self.name = alpha, name
        self.warmup_target, self.warmup_steps = warmup_target, warmup_steps

    def _decay(self, step, decay_steps, decay_from):
        cosine = _f32(0.5) * (_f32(1) + np.cos(_f32(math.pi) * (step / decay_steps)))
        return decay_from * ((_f32(1) - _f32(self.alpha)) * cosine + _f32(self.alpha))

    def __call__(self, step):
        init, ds, s = _f32(self.initial_learning_rate), _f32(self.decay_steps), _f32(step)
        if self.warmup_target is None:
            return self._decay(min(s, ds), ds, init)
        target, ws = _f32(self.warmup_target), _f32(self.warmup_steps)
        s = min(s, ds + ws)
        if s < ws:
            return (target - init) * (s / ws) + init
        return self._decay(s - ws, ds, target)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "alpha": self.alpha, "name": self.name,
                "warmup_target": self.warmup_target, "warmup_steps": self.warmup_steps}


_SCHEDULES = {c.__name__: c for c in (ExponentialDecay, PiecewiseConstantDecay,
                                      PolynomialDecay, InverseTimeDecay, CosineDecay)}


def serialize(schedule):
    """{'class_name', 'config'} (tf.keras's and Keras 3's form, Keras 3's
    'module' key included)."""
    return {"module": "keras.optimizers.schedules", "class_name": type(schedule).__name__,
            "config": schedule.get_config(), "registered_name": None}


def deserialize(config):
    """A schedule from ``serialize``'s dict (tf.keras 2 or Keras 3 files)."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(f"not a serialized learning-rate schedule: {config!r}")
    cls = _SCHEDULES.get(config["class_name"])
    if cls is None:
        raise ValueError(f"Unknown learning-rate schedule {config['class_name']!r}: aslnet has "
                         f"{sorted(_SCHEDULES)} (pass a float learning_rate and change it with "
                         "a callback, e.g. aslnet.callbacks.LearningRateScheduler)")
    return cls.from_config(dict(config.get("config") or {}))
