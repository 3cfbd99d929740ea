"""Keras 3's AdamW: Adam with decoupled weight decay (w -= lr * weight_decay
* w before Adam's update, the base optimizer's rule); weight_decay is
required (default 0.004)."""

from .adam import Adam


class AdamW(Adam):
    """Keras's ``AdamW(learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999,
    epsilon=1e-7, amsgrad=False)`` (also ``weight_decay``, ``clipnorm``, ``clipvalue``,
    ``global_clipnorm``); the update runs in C."""
    _core_name = "adamw"

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-7, amsgrad=False, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, name=None, **kwargs):
        if weight_decay is None:
            raise ValueError("Argument `weight_decay` must be a float. Received: "
                             "weight_decay=None")
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay,
                         clipnorm, clipvalue, global_clipnorm, name, **kwargs)
