"""Keras 3's Nadam: with u_s = beta_1 (1 - 0.5 * 0.96^s) and
U_t = u_1 ... u_t, m and v as Adam's, then
m_hat = u_{t+1} m / (1 - U_t u_{t+1}) + (1 - u_t) g / (1 - U_t),
v_hat = v / (1 - beta_2^t), w -= lr m_hat / (sqrt(v_hat) + epsilon).
U_t follows from the step count (the C core computes it).  Keras 2 files
keep Keras 2's own product, ``momentum_cache`` (u_s with 0.96^(0.004 s)):
written for Keras 2 to resume from, ignored when read back."""

import numpy as np

from .optimizer import Optimizer, _positive, _unit


class Nadam(Optimizer):
    """Keras's ``Nadam(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7)`` (also
    ``weight_decay``, ``clipnorm``, ``clipvalue``, ``global_clipnorm``); the update runs in
    C."""
    _core_name = "nadam"
    _keras2_scalars = ("momentum_cache",)

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 name=None, **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         name, **kwargs)
        self.beta_1 = _unit(beta_1, "beta_1", upper_open=True)
        self.beta_2 = _unit(beta_2, "beta_2", upper_open=True)
        self.epsilon = _positive(epsilon, "epsilon")

    def _slots(self):
        return ("m", "v")

    def _keras2_scalar_values(self, iterations):
        """{'momentum_cache': Keras 2's product after ``iterations`` steps}."""
        s = np.arange(1, int(iterations) + 1, dtype=np.float64)
        u = np.prod(self.beta_1 * (1.0 - 0.5 * 0.96 ** (0.004 * s)))
        return {"momentum_cache": np.float32(u)}

    def _kind_config(self):
        return dict(beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon)
