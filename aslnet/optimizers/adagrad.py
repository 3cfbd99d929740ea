"""Keras 3's Adagrad: acc += g^2 (acc starts at initial_accumulator_value);
w -= lr g / sqrt(acc + epsilon)."""

import math

from .optimizer import Optimizer, _is_number, _positive


class Adagrad(Optimizer):
    """Keras's ``Adagrad(learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7)``
    (also ``weight_decay``, ``clipnorm``, ``clipvalue``, ``global_clipnorm``); the update
    runs in C."""
    _core_name = "adagrad"

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 name=None, **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         name, **kwargs)
        v = initial_accumulator_value
        if not (_is_number(v) and math.isfinite(v) and v >= 0):
            raise ValueError("`initial_accumulator_value` must be a finite number >= 0, got "
                             f"{v!r}")
        self.initial_accumulator_value = float(v)
        self.epsilon = _positive(epsilon, "epsilon")

    def _slots(self):
        return ("accumulator",)

    def _kind_config(self):
        return dict(initial_accumulator_value=self.initial_accumulator_value,
                    epsilon=self.epsilon)
