"""Process-wide settings: thread count, random seed, layer-name counters.

These are user settings, as in Keras (``keras.utils.set_random_seed``,
``tf.config.threading``); model state never lives here.
"""
import collections
import itertools
import math
import os
import warnings

import numpy as np

_num_threads = 0                 # set at the end: default_num_threads()
_rng = np.random.default_rng()
_name_counts = collections.Counter()
_versions = itertools.count(1)   # versions of weight values (unique, increasing)


_local_processes = 1             # processes of this job on this machine (distribution)
_threads_set = False             # set_num_threads(n > 0) was called


def _set_local_processes(k):
    """aslnet.distribution: ``k`` processes share this machine; the default
    thread count becomes this process's share of the CPUs."""
    global _local_processes, _num_threads
    _local_processes = max(1, int(k))
    if not _threads_set:
        _num_threads = default_num_threads()


def set_num_threads(n):
    """Threads used by the C core (oneDNN and OpenBLAS) for every model; 0 or
    None: the default, ``default_num_threads()``."""
    global _num_threads, _threads_set
    n = 0 if n is None else int(n)
    _threads_set = n > 0
    if not 0 <= n <= MAX_THREADS:
        raise ValueError(f"num_threads must be in [0, {MAX_THREADS}] (0: the default, "
                         f"{default_num_threads()} here), got {n}")
    _num_threads = n or default_num_threads()


def get_num_threads():
    """Threads the C core uses."""
    return _num_threads


# The default thread count, as NumPy's, PyTorch's and oneDNN's users expect it:
# OMP_NUM_THREADS when set, else the CPUs this process may run on (its affinity
# mask, as taskset/numactl/Slurm/Kubernetes set it) capped by its cgroup's CPU
# quota (docker --cpus, Kubernetes limits).  The C core's own default (all the
# machine's cores) is never used: the resolved count is what Python passes it.

MAX_THREADS = 1024               # the C core's limit (ASL_MAX_THREADS)


def default_num_threads():
    """OMP_NUM_THREADS if set (its first, outermost level), else the number of
    CPUs in this process's affinity mask, capped by the cgroup CPU quota
    (rounded up), divided among the processes of a data-parallel job on this
    machine (aslnet.distribution) unless the launcher bound each process to
    its own CPUs (an affinity mask narrower than the machine)."""
    n = _omp_num_threads()
    if n is None:
        n = cpus = _affinity_cpus()
        quota = _cgroup_cpu_limit()
        if quota is not None:
            n = min(n, max(1, math.ceil(quota)))
        if _local_processes > 1 and cpus >= (os.cpu_count() or cpus):
            n = max(1, n // _local_processes)
    return max(1, min(n, MAX_THREADS))


def _omp_num_threads(environ=os.environ):
    """OMP_NUM_THREADS's first level ("4" or "4,2"), None when unset or not a
    positive integer (a warning says so: OpenMP ignores it then too)."""
    text = environ.get("OMP_NUM_THREADS", "").strip()
    if not text:
        return None
    first = text.split(",")[0].strip()
    if first.isdigit() and int(first) > 0:
        return int(first)
    warnings.warn(f"OMP_NUM_THREADS={text!r} is not a positive integer: ignored "
                  "(aslnet uses the CPUs this process may run on)", RuntimeWarning,
                  stacklevel=3)
    return None


def _affinity_cpus():
    """CPUs this process may run on (``os.sched_getaffinity``; all CPUs where
    the platform has no affinity mask)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _cgroup_dirs(mount, path):
    """``mount/path`` and its parents up to ``mount`` (a limit set on a parent
    applies too); ``mount`` alone where ``path`` is not visible, as inside a
    container whose cgroup namespace hides it."""
    mount = os.path.normpath(mount)
    d = os.path.normpath(os.path.join(mount, path.lstrip("/")))
    if not (d.startswith(mount + os.sep) and os.path.isdir(d)):
        return [mount]
    dirs = []
    while d != mount:
        dirs.append(d)
        d = os.path.dirname(d)
    return dirs + [mount]


def _cgroup_cpu_limit(root="/sys/fs/cgroup", proc_cgroup="/proc/self/cgroup"):
    """CPUs the cgroup quota allows (quota / period, the smallest along the
    hierarchy), or None when unlimited or unknown.  cgroup v2: ``cpu.max``
    ("max 100000" or "150000 100000"); v1: ``cpu.cfs_quota_us`` (-1:
    unlimited) over ``cpu.cfs_period_us``."""
    text = _read(proc_cgroup)
    if not text:
        return None
    limits = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":                                   # v2 (unified)
            for d in _cgroup_dirs(root, path):
                fields = (_read(os.path.join(d, "cpu.max")) or "").split()
                if len(fields) == 2 and fields[0] != "max":
                    limits.append(_ratio(fields[0], fields[1]))
        elif "cpu" in controllers.split(","):                   # v1
            for mount in (os.path.join(root, controllers), os.path.join(root, "cpu")):
                if not os.path.isdir(mount):
                    continue
                for d in _cgroup_dirs(mount, path):
                    limits.append(_ratio(_read(os.path.join(d, "cpu.cfs_quota_us")),
                                         _read(os.path.join(d, "cpu.cfs_period_us"))))
                break
    limits = [x for x in limits if x is not None]
    return min(limits) if limits else None


def _ratio(quota, period):
    try:
        q, p = int(quota), int(period)
    except (TypeError, ValueError):
        return None
    return q / p if q > 0 and p > 0 else None


def set_random_seed(seed):
    """Seed weight initialisation, dropout and shuffling, like Keras's."""
    global _rng
    _rng = np.random.default_rng(seed)
    np.random.seed(seed % (2 ** 32))


def rng():
    """The NumPy ``Generator`` that weight initialisation, dropout and shuffling draw from
    (reseeded by :func:`set_random_seed`)."""
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
    global _latest_version
    _latest_version = version = next(_versions)
    return version


_latest_version = 0   # the last number new_version gave: no weight changed since a
                      # network saw this one (CoreNetwork.sync then skips its scan)


# -- Keras's backend functions that scripts call -----------------------------------------------
def image_data_format():
    """aslnet's images are (height, width, channels): 'channels_last'."""
    return "channels_last"


def set_image_data_format(data_format):
    """Keras's ``set_image_data_format``: only ``'channels_last'`` is taken; anything else
    raises ``NotImplementedError``."""
    if data_format != "channels_last":
        raise NotImplementedError(f"set_image_data_format({data_format!r}): aslnet computes "
                                  "with 'channels_last' images only (transpose the input)")


def floatx():
    """The default float type, as Keras's ``floatx``: always ``'float32'`` (bfloat16 is
    :mod:`aslnet.mixed_precision`'s)."""
    return "float32"


def set_floatx(value):
    """Keras's ``set_floatx``: only ``'float32'`` is taken; anything else raises
    ``NotImplementedError``."""
    if value != "float32":
        raise NotImplementedError(f"set_floatx({value!r}): aslnet computes in float32 (for "
                                  "bfloat16 see aslnet.mixed_precision)")


def epsilon():
    """The fuzz factor of Keras's losses and metrics (1e-7)."""
    return 1e-7


def backend():
    """The backend's name, as Keras's ``backend()``: ``'aslnet'``."""
    return "aslnet"


_num_threads = default_num_threads()   # always the resolved count (never 0)


def __getattr__(name):
    raise AttributeError(f"aslnet.backend has no {name}: aslnet's backend has clear_session, "
                         "image_data_format, floatx, epsilon, set_random_seed and "
                         "set/get_num_threads; tensor functions (K.mean, K.function, ...) do "
                         "not exist: aslnet computes in C, not on a tensor library (see "
                         "README's Keras API table)")
