"""Keras 3's RMSprop: v = rho v + (1 - rho) g^2; centered: a = rho a +
(1 - rho) g and den = v - a^2 + epsilon, else den = v + epsilon;
inc = lr g / sqrt(den); with momentum m = momentum m + inc, w -= m; else
w -= inc.  (Keras 2 put epsilon outside the square root without momentum:
Keras 3's rule is the one here.)"""

import numpy as np

from .optimizer import Optimizer, _positive, _unit


class RMSprop(Optimizer):
    """Keras's ``RMSprop(learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7,
    centered=False)`` (also ``weight_decay``, ``clipnorm``, ``clipvalue``,
    ``global_clipnorm``); the update runs in C."""
    _core_name = "rmsprop"

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7,
                 centered=False, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, name=None, **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         name, **kwargs)
        self.rho = _unit(rho, "rho", upper_open=True)
        self.momentum = _unit(momentum, "momentum")
        self.epsilon = _positive(epsilon, "epsilon")
        self.centered = bool(centered)

    def _slots(self):
        return (("rms",) + (("momentum",) if np.float32(self.momentum) > 0 else ()) +
                (("mg",) if self.centered else ()))

    def _kind_config(self):
        return dict(rho=self.rho, momentum=self.momentum, epsilon=self.epsilon,
                    centered=self.centered)
