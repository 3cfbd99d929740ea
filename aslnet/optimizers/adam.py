"""Keras 3's Adam: m += (g - m)(1 - beta_1); v += (g^2 - v)(1 - beta_2)
[amsgrad: v_hat = max(v_hat, v), used for v];
w -= m lr sqrt(1 - beta_2^t) / (1 - beta_1^t) / (sqrt(v) + epsilon)."""

from .optimizer import Optimizer, _positive, _unit


class Adam(Optimizer):
    """Keras's ``Adam(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
    amsgrad=False)`` (also ``weight_decay``, ``clipnorm``, ``clipvalue``,
    ``global_clipnorm``; Keras 2's ``lr=``, ``decay=``); the update runs in C."""
    _core_name = "adam"
    amsgrad = False                 # objects pickled by aslnet 0.1

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, name=None, **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         name, **kwargs)
        self.beta_1 = _unit(beta_1, "beta_1", upper_open=True)
        self.beta_2 = _unit(beta_2, "beta_2", upper_open=True)
        self.epsilon = _positive(epsilon, "epsilon")
        self.amsgrad = bool(amsgrad)

    def _slots(self):
        return ("m", "v", "vhat") if self.amsgrad else ("m", "v")

    def _kind_config(self):
        return dict(beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon,
                    amsgrad=self.amsgrad)
