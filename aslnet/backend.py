"""Process-wide settings: thread count, random seed, layer-name counters.

These are user settings, as in Keras (``keras.utils.set_random_seed``,
``tf.config.threading``); model state never lives here.
"""
import collections
import itertools
import os

import numpy as np

_num_threads = 0                 # 0: all cores
_rng = np.random.default_rng()
_name_counts = collections.Counter()
_versions = itertools.count(1)   # versions of weight values (unique, increasing)


def set_num_threads(n):
    """Threads used by the C core for every model (0 or None: all cores)."""
    global _num_threads
    n = 0 if n is None else int(n)
    if not 0 <= n <= 1024:
        raise ValueError(f"num_threads must be in [0, 1024] (0: all cores), got {n}")
    _num_threads = n


def get_num_threads():
    """Threads the C core uses (the number of cores when left at 0)."""
    return _num_threads or os.cpu_count() or 1


def set_random_seed(seed):
    """Seed weight initialisation, dropout and shuffling, like Keras's."""
    global _rng
    _rng = np.random.default_rng(seed)
    np.random.seed(seed % (2 ** 32))


def rng():
    return _rng


def unique_name(base, zero_based=True):
    """Keras-style auto names: 'dense', 'dense_1', ... (zero_based) or
    'input_1', 'input_2', ... (as tf.keras names inputs)."""
    n = _name_counts[base]
    _name_counts[base] += 1
    if not zero_based:
        return f"{base}_{n + 1}"
    return base if n == 0 else f"{base}_{n}"


def clear_session():
    """Reset the layer-name counters (as keras.backend.clear_session)."""
    _name_counts.clear()


def new_version():
    """A fresh version number for a weight's values (``Variable._version``):
    each C network compares the versions of its layers' weights with those it
    last saw, and refolds only the fused groups whose weights changed.  A
    counter of unique numbers, not state two models could share by accident."""
    return next(_versions)


# -- Keras's backend functions that scripts call -----------------------------------------------
def image_data_format():
    """aslnet's images are (height, width, channels): 'channels_last'."""
    return "channels_last"


def set_image_data_format(data_format):
    if data_format != "channels_last":
        raise NotImplementedError(f"set_image_data_format({data_format!r}): aslnet computes "
                                  "with 'channels_last' images only (transpose the input)")


def floatx():
    return "float32"


def set_floatx(value):
    if value != "float32":
        raise NotImplementedError(f"set_floatx({value!r}): aslnet computes in float32 (for "
                                  "bfloat16 see aslnet.mixed_precision)")


def epsilon():
    """The fuzz factor of Keras's losses and metrics (1e-7)."""
    return 1e-7


def backend():
    return "aslnet"


def __getattr__(name):
    raise AttributeError(f"aslnet.backend has no {name}: aslnet's backend has clear_session, "
                         "image_data_format, floatx, epsilon, set_random_seed and "
                         "set/get_num_threads; tensor functions (K.mean, K.function, ...) do "
                         "not exist: aslnet computes in C, not on a tensor library (see "
                         "README's Keras API table)")
