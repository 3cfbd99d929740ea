"""Keras 3's SGD: m = momentum * m - lr * g; w += m (nesterov:
w += momentum * m - lr * g); without momentum w -= lr * g."""

import numpy as np

from .optimizer import Optimizer, _unit


class SGD(Optimizer):
    """Keras's ``SGD(learning_rate=0.01, momentum=0.0, nesterov=False)`` (also
    ``weight_decay``, ``clipnorm``, ``clipvalue``, ``global_clipnorm``); the update runs in
    C."""
    _core_name = "sgd"

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, name=None, **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         name, **kwargs)
        self.momentum = _unit(momentum, "momentum")
        self.nesterov = bool(nesterov)

    def _slots(self):
        return ("momentum",) if np.float32(self.momentum) != 0 else ()

    def _kind_config(self):
        return dict(momentum=self.momentum, nesterov=self.nesterov)
