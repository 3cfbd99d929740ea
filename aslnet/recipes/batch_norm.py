"""Re-creating batch-norm statistics for weights that carry none."""
import numpy as np

from ..layers import BatchNormalization
from ..trainers.data_adapters import batches, num_steps

__all__ = ["recalibrate_batch_norm"]


def recalibrate_batch_norm(model, x, batch_size=32, steps=None):
    """Re-create the moving statistics of every BatchNormalization layer
    from data ``x`` (arrays or an image iterator), keeping the function the
    model computes in inference mode unchanged.

    Pretrained weights with batch normalization folded into the
    convolutions carry no statistics (moving_mean 0, moving_variance ~1);
    a *trainable* batch norm then re-normalises activations with batch
    statistics far from the moving ones.  For each layer this measures the
    per-channel mean m and variance v of its input and sets
    ``moving_mean = m, moving_variance = v`` with gamma and beta rescaled so
    that ``gamma * (x - mean) / sqrt(var + eps) + beta`` is unchanged.
    Returns the number of samples measured."""
    with model._lock:
        return _recalibrate(model, x, batch_size, steps, batches, num_steps)


def _recalibrate(model, x, batch_size, steps, batches, num_steps):
    network = model._core()
    bns = [(layer, network.first_op(layer)) for layer in model._layers
           if isinstance(layer, BatchNormalization)]
    if not bns:
        return 0
    stats = [[0.0, 0.0] for _ in bns]
    count = 0
    for xb, _, _ in batches(x, None, batch_size, False, num_steps(x, batch_size, steps),
                            with_targets=False):
        h, start = model._to_input(xb), 0
        for k, (layer, idx) in enumerate(bns):
            if idx > start:
                h = network.forward(h, start=start, stop=idx)
                start = idx
            flat = h.reshape(-1, h.shape[-1]).astype(np.float64)
            stats[k][0] = stats[k][0] + flat.sum(0)
            stats[k][1] = stats[k][1] + (flat * flat).sum(0)
        count += h.shape[0]
    for (layer, _), (s, ss) in zip(bns, stats):
        n = count * int(np.prod(layer._in_shape[:-1]))     # values per channel
        m = s / n
        v = np.maximum(ss / n - m * m, 0.0)
        gamma, beta, mean, var = (w.astype(np.float64) for w in layer.get_weights())
        eps = layer.epsilon
        scale = gamma / np.sqrt(var + eps)
        layer.set_weights([scale * np.sqrt(v + eps), beta + scale * (m - mean), m, v])
    return count
