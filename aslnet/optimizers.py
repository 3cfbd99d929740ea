"""Keras-shaped optimizers.  They only carry hyper-parameters: the update
rule and its state run in C (see csrc/network.c)."""

__all__ = ["Optimizer", "SGD", "Adam", "get"]


import math

import numpy as np

from .layers import _is_neutral


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


# Keras optimizer arguments taken at the value that changes nothing.
_NEUTRAL = {"clipnorm": (None,), "clipvalue": (None,), "global_clipnorm": (None,),
            "weight_decay": (None, 0, 0.0), "use_ema": (False,), "decay": (0, 0.0, None),
            "amsgrad": (False,), "jit_compile": (True, False, None),
            "loss_scale_factor": (None,), "gradient_accumulation_steps": (None,)}


class Optimizer:
    _core_name = None

    def __init__(self, learning_rate, name=None, **kwargs):
        if "lr" in kwargs:                       # tf.keras 1/2's name
            learning_rate = kwargs.pop("lr")
        for key in [k for k in kwargs if k in _NEUTRAL]:
            value = kwargs.pop(key)
            if not _is_neutral(value, _NEUTRAL[key]):
                raise NotImplementedError(f"{type(self).__name__}({key}={value!r}) is not "
                                          "supported by aslnet")
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected arguments {sorted(kwargs)}")
        self.name = name or type(self).__name__.lower()
        self.learning_rate = learning_rate

    @property
    def learning_rate(self):
        return _LearningRate(self._learning_rate, self)

    @learning_rate.setter
    def learning_rate(self, value):
        if callable(value) and not isinstance(value, (int, float, np.number)):
            raise NotImplementedError("learning-rate schedules are not supported; pass a "
                                      "number (and change it with a callback, e.g. "
                                      "aslnet.callbacks.LearningRateScheduler)")
        if isinstance(value, (str, bytes, bool, complex, np.complexfloating)):
            raise ValueError(f"learning_rate must be a number, got {value!r}")
        value = float(value)
        if not (math.isfinite(value) and 0.0 <= value <= float(np.finfo(np.float32).max)):
            raise ValueError(f"learning_rate must be finite, >= 0 and within float32, got "
                             f"{value}")
        self._learning_rate = value

    lr = learning_rate          # tf.keras 2's name

    @property
    def iterations(self):
        """Steps taken by this optimizer in the model it was last compiled with
        (the count lives in that model's C network)."""
        ref = self.__dict__.get("_model_ref")
        model = ref() if ref is not None else None
        if model is None:
            return 0
        if model._net is None:                  # a copy not run yet: its restored state
            pending = model.__dict__.get("_pending_opt")
            return int(pending["iterations"]) if pending else 0
        return int(model._net.net.iterations)

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_model_ref", None)           # the model relinks its copy
        return state

    def _core_config(self):
        raise NotImplementedError

    def get_config(self):
        return {"name": self._core_name, **self._core_config()}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.pop("name", None)
        return cls(**config)


class SGD(Optimizer):
    """Keras SGD: v = momentum*v - lr*g; w += v (nesterov: w += momentum*v - lr*g)."""

    _core_name = "sgd"

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, name=None, **kwargs):
        super().__init__(learning_rate, name, **kwargs)
        if not 0.0 <= float(momentum) <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)

    def _core_config(self):
        return dict(learning_rate=self.learning_rate, momentum=self.momentum,
                    nesterov=self.nesterov)


class Adam(Optimizer):
    """Keras Adam (defaults beta_1 0.9, beta_2 0.999, epsilon 1e-7)."""

    _core_name = "adam"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, name=None,
                 **kwargs):
        super().__init__(learning_rate, name, **kwargs)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)

    def _core_config(self):
        return dict(learning_rate=self.learning_rate, beta_1=self.beta_1,
                    beta_2=self.beta_2, epsilon=self.epsilon)


def get(identifier):
    """'adam' / 'sgd' / an Optimizer / a config dict -> an Optimizer."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        key = identifier.lower()
        if key == "adam":
            return Adam()
        if key == "sgd":
            return SGD()
    if isinstance(identifier, dict):
        cls = {"adam": Adam, "sgd": SGD}.get(str(identifier.get("name", "")).lower())
        if cls:
            return cls.from_config(identifier)
    module = (type(identifier).__module__ or "").split(".")[0]
    hint = (f" (a {module} optimizer: use aslnet.optimizers.Adam / SGD with the same "
            "arguments)" if module in ("keras", "tensorflow", "tf_keras", "torch") else "")
    raise ValueError(f"Unknown optimizer {identifier!r}; aslnet has 'adam' and 'sgd'{hint}")
