"""Random layer parameters for the C-core tests: kernels scaled by fan-in, batch-norm
statistics in a well-conditioned range."""
import math

import numpy as np


def random_param(rng, name, shape, w_scale=1.0, var_low=0.5):
    """A float32 array for the parameter `name` ('kernel', 'depthwise_kernel', 'gamma',
    'moving_variance', else a bias/beta/moving_mean) of `shape`."""
    if name in ("kernel", "depthwise_kernel"):
        fan_in = int(np.prod(shape[:-1])) if name == "kernel" else shape[0] * shape[1]
        v = rng.normal(0, w_scale / math.sqrt(fan_in), shape)
    elif name == "gamma":
        v = rng.uniform(0.5, 1.5, shape)
    elif name == "moving_variance":
        v = rng.uniform(var_low, 2.0, shape)
    else:   # bias, beta, moving_mean
        v = rng.normal(0, 0.5, shape)
    return v.astype(np.float32)
