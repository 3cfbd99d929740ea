"""Dropout."""
from .. import backend
from .layer import Layer


class Dropout(Layer):
    """Keras's ``Dropout``: in training, zeroes each value with probability ``rate``
    and scales the others by ``1 / (1 - rate)``; in inference it passes its input through.

    :param rate: in [0, 1).
    :param noise_shape: only None (the default): each value is dropped independently.
    :param seed: optional int (default: drawn from :func:`aslnet.set_random_seed`'s generator)."""
    _base_name = "dropout"
    _training_dependent = True

    def __init__(self, rate, noise_shape=None, seed=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        if noise_shape is not None:
            raise NotImplementedError(f"Layer '{self.name}': Dropout's noise_shape is not "
                                      "supported (independent dropout per value only)")
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"Dropout rate must be in [0, 1), got {rate}")
        self.rate = float(rate)
        self.seed = int(backend.rng().integers(2 ** 63)) if seed is None else int(seed)

    def _core_ops(self):
        return [("dropout", dict(rate=self.rate, seed=self.seed))]

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}
