"""The base of aslnet's optimizers: Keras 3's constructor arguments
(learning rate as a float, a schedule or a callable; weight_decay, clipnorm,
clipvalue, global_clipnorm), Keras 2's ``lr=`` and ``decay=``, configs.
Optimizers only carry hyper-parameters: the update rules and their state
run in C (csrc/optimizers.c, slots in csrc/network.c)."""

import math

import numpy as np

from ..layers.layer import _is_neutral
from . import schedules as schedules_mod


class _LearningRate(float):
    """An optimizer's learning rate: a float that also answers the Keras
    variable calls users write, ``optimizer.learning_rate.assign(1e-5)``
    and ``.numpy()``.  ``assign`` sets the optimizer's rate (read it again
    from the optimizer: this float keeps its value)."""

    def __new__(cls, value, owner):
        self = super().__new__(cls, value)
        self._owner = owner
        return self

    def assign(self, value):
        self._owner.learning_rate = value
        return self._owner.learning_rate

    def numpy(self):
        return np.float32(self)

    def __reduce__(self):                  # copies and pickles are plain floats
        return float, (float(self),)


class _Iterations(int):
    """An optimizer's step count: an int that also answers Keras's variable
    call ``optimizer.iterations.numpy()``."""

    def numpy(self):
        return np.int64(self)

    def __reduce__(self):                  # copies and pickles are plain ints
        return int, (int(self),)


# Keras optimizer arguments taken at the value that changes nothing.
_NEUTRAL = {"use_ema": (False,), "ema_momentum": (0.99,), "ema_overwrite_frequency": (None,),
            "jit_compile": (True, False, None), "loss_scale_factor": (None,),
            "gradient_accumulation_steps": (None,), "is_legacy_optimizer": (False, True)}

_F32_MAX = float(np.finfo(np.float32).max)


def _is_number(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value,
                                                                                       bool)


def _check_rate(value, what="learning_rate"):
    """A learning rate as the C core takes it: finite, >= 0, within float32."""
    if not _is_number(value):
        raise ValueError(f"{what} must be a number, got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and 0.0 <= value <= _F32_MAX):
        raise ValueError(f"{what} must be finite, >= 0 and within float32, got {value}")
    return value


def _optional(value, what, positive=True):
    """None (off) or a finite number >= 0 (Keras: 0 is off too)."""
    if value is None:
        return None
    if not _is_number(value) or not math.isfinite(value) or value < 0:
        raise ValueError(f"`{what}` must be None or a finite number >= 0, got {value!r}")
    return float(value)


def _unit(value, what, upper_open=False):
    """A float in [0, 1] ([0, 1) with upper_open)."""
    ok = _is_number(value) and 0.0 <= value and (value < 1.0 if upper_open else value <= 1.0)
    if not ok:
        raise ValueError(f"`{what}` must be a float in [0, {'1)' if upper_open else '1]'}, "
                         f"got {value!r}")
    return float(value)


def _positive(value, what):
    if not _is_number(value) or not math.isfinite(value) or not value > 0:
        raise ValueError(f"`{what}` must be a finite number > 0, got {value!r}")
    return float(value)


class Optimizer:
    """Keras 3's ``Optimizer`` arguments.  A subclass sets ``_core_name``
    (the C kind), ``_slots`` (Keras 2's names of its slots, in the C core's
    order: csrc/aslnet.h) and ``_core_config`` / ``get_config``."""

    _core_name = None
    _keras2_scalars = ()            # Keras 2 files' scalar weights after ``iter``
    # defaults for objects pickled before these arguments existed (aslnet 0.1)
    decay, weight_decay, clipnorm, clipvalue, global_clipnorm = 0.0, None, None, None, None

    def __init__(self, learning_rate, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, name=None, **kwargs):
        if "lr" in kwargs:                       # tf.keras 1/2's name
            learning_rate = kwargs.pop("lr")
        decay = kwargs.pop("decay", None)        # Keras 2: lr / (1 + decay * iterations)
        for key in [k for k in kwargs if k in _NEUTRAL]:
            value = kwargs.pop(key)
            if not _is_neutral(value, _NEUTRAL[key]):
                raise NotImplementedError(f"{type(self).__name__}({key}={value!r}) is not "
                                          "supported by aslnet")
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected arguments {sorted(kwargs)}")
        self.decay = _optional(decay, "decay") or 0.0
        self.weight_decay = _optional(weight_decay, "weight_decay")
        self.clipnorm = _optional(clipnorm, "clipnorm")
        self.clipvalue = _optional(clipvalue, "clipvalue")
        self.global_clipnorm = _optional(global_clipnorm, "global_clipnorm")
        if sum(a is not None for a in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError("Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can "
                             f"be set. Received: clipnorm={clipnorm}, clipvalue={clipvalue}, "
                             f"global_clipnorm={global_clipnorm}")
        self.name = name or type(self).__name__.lower()
        self._learning_rate = None
        self.learning_rate = learning_rate

    # -- learning rate ---------------------------------------------------------
    @property
    def learning_rate(self):
        """The learning rate now: the float, or the schedule's value at
        ``iterations`` (as Keras 3)."""
        lr = self._learning_rate
        if isinstance(lr, schedules_mod.LearningRateSchedule) or callable(lr):
            return _LearningRate(self._rate_of(lr, self.iterations), self)
        return _LearningRate(lr, self)

    @learning_rate.setter
    def learning_rate(self, value):
        if isinstance(value, schedules_mod.LearningRateSchedule) or (
                callable(value) and not _is_number(value)):
            self._learning_rate = value
            return
        if isinstance(self._learning_rate, schedules_mod.LearningRateSchedule):
            raise TypeError("This optimizer was created with a `LearningRateSchedule` object "
                            "as its `learning_rate` constructor argument, hence its learning "
                            "rate is not settable. If you need the learning rate to be "
                            "settable, you should instantiate the optimizer with a float "
                            "`learning_rate` argument.")
        self._learning_rate = _check_rate(value)

    lr = learning_rate          # tf.keras 2's name

    @staticmethod
    def _rate_of(lr, step):
        value = lr(step) if isinstance(lr, schedules_mod.LearningRateSchedule) else lr()
        try:
            return _check_rate(float(np.asarray(value)))
        except (TypeError, ValueError) as e:
            raise ValueError(f"the learning-rate schedule {lr!r} gave {value!r} at step "
                             f"{step}: {e}") from None

    def _has_schedule(self):
        return not _is_number(self._learning_rate)

    def _step_learning_rate(self, iterations):
        """The rate of the step after ``iterations`` steps, as the C core
        gets it before every step: the schedule's value at ``iterations``,
        divided by 1 + decay * iterations with Keras 2's ``decay``."""
        lr = self._learning_rate
        rate = self._rate_of(lr, iterations) if self._has_schedule() else lr
        if self.decay:
            rate = rate / (1.0 + self.decay * iterations)
        return rate

    @property
    def iterations(self):
        """Steps taken by this optimizer in the model it was last compiled with
        (the count lives in that model's C network); an int with Keras's
        ``.numpy()``."""
        ref = self.__dict__.get("_model_ref")
        model = ref() if ref is not None else None
        if model is None:
            return _Iterations(0)
        if model._net is None:                  # a copy not run yet: its restored state
            pending = model.__dict__.get("_pending_opt")
            return _Iterations(pending["iterations"] if pending else 0)
        return _Iterations(model._net.net.iterations)

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_model_ref", None)           # the model relinks its copy
        return state

    # -- configs ---------------------------------------------------------------
    def _slots(self):
        """Keras 2's names of this optimizer's slots, in the C core's order."""
        raise NotImplementedError

    def _kind_config(self):
        """The subclass's own arguments (Keras 3's get_config additions)."""
        raise NotImplementedError

    def _core_config(self):
        """Keyword arguments of ``aslnet._core.Net.set_optimizer``."""
        return dict(learning_rate=self._step_learning_rate(self.iterations),
                    weight_decay=self.weight_decay, clipnorm=self.clipnorm,
                    clipvalue=self.clipvalue, global_clipnorm=self.global_clipnorm,
                    **self._kind_config())

    def get_config(self):
        """Keras 3's config (a schedule serialized); ``decay`` only when set."""
        lr = self._learning_rate
        if isinstance(lr, schedules_mod.LearningRateSchedule):
            lr = schedules_mod.serialize(lr)
        elif callable(lr):
            raise ValueError("get_config: a learning rate given as a plain callable cannot be "
                             "serialized; use an aslnet.optimizers.schedules class")
        config = {"name": self.name, "learning_rate": lr, "weight_decay": self.weight_decay,
                  "clipnorm": self.clipnorm, "global_clipnorm": self.global_clipnorm,
                  "clipvalue": self.clipvalue, "use_ema": False, "ema_momentum": 0.99,
                  "ema_overwrite_frequency": None, "loss_scale_factor": None,
                  "gradient_accumulation_steps": None, **self._kind_config()}
        if self.decay:
            config["decay"] = self.decay
        return config

    @classmethod
    def from_config(cls, config):
        """An optimizer from ``get_config()``'s output (Keras 2's and 3's keys)."""
        config = dict(config)
        lr = config.get("learning_rate", config.get("lr"))
        if isinstance(lr, dict):
            config.pop("lr", None)
            config["learning_rate"] = schedules_mod.deserialize(lr)
        return cls(**config)

    def __repr__(self):
        return f"<aslnet.optimizers.{type(self).__name__} name={self.name!r}>"
