"""BatchNormalization."""
import numpy as np

from .layer import Layer


class BatchNormalization(Layer):
    """Keras BatchNormalization over the last axis.  Frozen (trainable=False)
    it runs in inference mode, as in Keras; trainable, ``fit`` uses batch
    statistics and updates the moving ones (momentum 0.99).

    ``synchronized``: Keras's argument; in one process it changes nothing (as in Keras).
    Under aslnet.distribution.DataParallel with several processes, ``synchronized=True``
    makes a trainable layer normalise with the statistics of the global batch (the ranks
    sum their per-channel sums in the forward and backward passes), so that N ranks
    train as one process on the whole batch; ``False`` normalises each rank's slice."""

    _base_name = "batch_normalization"
    _training_dependent = True
    synchronized = False      # (the default of layers pickled before it existed)

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, name=None, synchronized=False,
                 **kwargs):
        super().__init__(name=name, **kwargs)
        self.synchronized = bool(synchronized)
        if axis not in (-1, 3):
            raise ValueError("aslnet's BatchNormalization normalises the channel axis (-1)")
        self.axis, self.momentum, self.epsilon = axis, float(momentum), float(epsilon)

    def build(self, input_shape):
        c = input_shape[-1]
        self._add_weight("gamma", np.ones(c, np.float32))
        self._add_weight("beta", np.zeros(c, np.float32))
        self._add_weight("moving_mean", np.zeros(c, np.float32), trainable=False)
        self._add_weight("moving_variance", np.ones(c, np.float32), trainable=False)

    def _core_ops(self):
        return [("batch_normalization", dict(momentum=self.momentum, epsilon=self.epsilon,
                                             synchronized=int(self.synchronized)))]

    def get_config(self):
        config = {**super().get_config(), "axis": self.axis, "momentum": self.momentum,
                  "epsilon": self.epsilon}
        if self.synchronized:       # (Keras 3's key; tf.keras 2's files keep their shape)
            config["synchronized"] = True
        return config
