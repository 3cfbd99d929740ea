"""What ``fit`` and ``evaluate`` do differently under
``aslnet.distribution.DataParallel`` with more than one process.

``Replicas`` wraps the communicator: each rank's contiguous slice of a global
batch, rank 0's weights and random state broadcast at the start of ``fit``,
one check that the ranks agree on the model and the data, one in-place
Allreduce of the flat gradient buffer per step (``Net.grad_buffer``), and the
global loss and metrics (an Allreduce of their sums).
"""
import copy
import numbers

import numpy as np

from .. import backend
from .. import distribution as dist_mod

__all__ = ["Replicas", "replicas"]


def replicas():
    """The ``Replicas`` of the distribution set, or None (one process: no-op)."""
    dist = dist_mod._active()
    return None if dist is None else Replicas(dist)


def _take(item, lo, hi):
    return None if item is None else item[lo:hi]


class Replicas:
    """One data-parallel job seen from this rank (see the module)."""

    def __init__(self, dist):
        self.dist, self.comm = dist, dist.comm
        self.rank, self.size = dist.rank, dist.size

    @property
    def MPI(self):
        """mpi4py's MPI module (imported when first needed)."""
        from mpi4py import MPI
        return MPI

    # -- batches ------------------------------------------------------------
    def span(self, n):
        """This rank's slice [lo, hi) of a global batch of ``n`` samples."""
        return n * self.rank // self.size, n * (self.rank + 1) // self.size

    def shard(self, *items, n):
        """``items`` (arrays or None) cut to this rank's slice of ``n`` samples."""
        lo, hi = self.span(n)
        return tuple(_take(item, lo, hi) for item in items)

    # -- start of fit -------------------------------------------------------
    def check_same(self, what, value):
        """Raise ValueError on every rank when the ranks' ``value`` differ."""
        values = self.comm.allgather(value)
        if any(v != values[0] for v in values[1:]):
            listing = "; ".join(f"rank {r}: {v}" for r, v in enumerate(values))
            raise ValueError(f"DataParallel: the processes disagree on {what} ({listing}); "
                             "every rank must run the same script on the same data")

    def start_fit(self, model, network, steps, x):
        """Check the ranks agree, then give every rank rank 0's weights and
        random state (shuffling, dropout)."""
        shapes = [tuple(v._value.shape) for l in model._layers for v in l.weights]
        self.check_same("the model's weight shapes", shapes)
        self.check_same("the trainable weights", [l.trainable for l in model._layers])
        self.check_same("the steps per epoch", steps)
        self.check_same("the number of samples", _length(x))
        for layer in model._layers:
            for var in layer.weights:
                self.comm.Bcast(var._value, root=0)
                var._version = backend.new_version()
        backend._rng.bit_generator.state = self.comm.bcast(
            backend._rng.bit_generator.state, root=0)
        if any(type(l).__name__ == "BatchNormalization" and l.trainable and
               not l.synchronized for l in model._layers):
            dist_mod._warn_bn_once(self.dist)

    def allreduce(self, buf):
        """Sum the float64 array ``buf`` over the ranks in place: the reducer of
        the synchronized batch norms (``CoreNetwork.set_allreduce``)."""
        self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)

    # -- one step -----------------------------------------------------------
    def average_gradients(self, net, n_local, n_global):
        """Sum the ranks' gradients weighted by their share of the global batch
        (each rank's is the mean over its slice): the global-batch mean."""
        view = net.grad_buffer()
        if n_local == 0:
            view[:] = 0.0                          # no backward ran: nothing to weight
        else:
            view *= np.float32(n_local / n_global)
        self.comm.Allreduce(self.MPI.IN_PLACE, view, op=self.MPI.SUM)

    # -- logs ---------------------------------------------------------------
    def global_state(self, loss_sum, seen, metrics):
        """(loss sum, samples, metrics) over all ranks: copies of the metric
        objects holding the summed states (one Allreduce)."""
        states = [_state_keys(m) for m in metrics]
        parts = [np.array([loss_sum, seen], np.float64)]
        for m, keys in zip(metrics, states):
            parts += [np.asarray(getattr(m, k), np.float64).reshape(-1) for k in keys]
        flat = np.concatenate(parts)
        self.comm.Allreduce(self.MPI.IN_PLACE, flat, op=self.MPI.SUM)
        out, k = [], 2
        for m, keys in zip(metrics, states):
            g = copy.copy(m)
            for key in keys:
                old = getattr(m, key)
                size = np.size(old)
                value = flat[k:k + size]
                k += size
                setattr(g, key, value.reshape(np.shape(old)) if isinstance(old, np.ndarray)
                        else type(old)(value[0]))
            out.append(g)
        return float(flat[0]), int(round(flat[1])), out


def _length(x):
    """len(x), or None where the data does not tell (a generator, an endless dataset)."""
    try:
        return len(x)
    except TypeError:
        return None


def _state_keys(metric):
    """The additive state of a metric: its numeric attributes that are not
    constructor arguments (Mean's total and count, the confusion counts)."""
    config = set(metric.get_config()) if hasattr(metric, "get_config") else set()
    return sorted(k for k, v in vars(metric).items()
                  if k not in config and not k.startswith("__") and not isinstance(v, bool)
                  and (isinstance(v, numbers.Number) or
                       (isinstance(v, np.ndarray) and v.dtype.kind in "fiu")))
