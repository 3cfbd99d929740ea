"""Keras 3's ``keras.distribution``, for data-parallel training over MPI.

    aslnet.distribution.set_distribution(aslnet.distribution.DataParallel())
    model.fit(x, y, batch_size=64, epochs=5)

and the same script launched as ``mpirun -n 4 python -m mpi4py train.py``
(``python -m mpi4py`` aborts the whole job when one process dies, instead of
leaving the others waiting).  Each process (an MPI rank) holds the whole
model; ``fit``'s ``batch_size`` is the global batch, each rank computes its
contiguous slice of every batch and the ranks average their gradients with
one MPI Allreduce per step, so the weights stay the same on every rank.
Rank 0's weights are broadcast at the start of ``fit``; the loss and metrics
that History, the progress bar and the callbacks see are those of the whole
global batch, on every rank; only rank 0 prints and writes files
(``model.save``, ``ModelCheckpoint``).  See docs/guides/distributed.md.

One process started without a launcher is a world of one: ``DataParallel``
then changes nothing.  Needs ``mpi4py`` and an MPI library
(``pip install mpi4py mpich``).
"""
import os
import warnings

from . import backend

__all__ = ["DataParallel", "set_distribution", "distribution", "list_devices",
           "process_id", "num_processes", "initialize"]

_distribution = None
_INSTALL = ("aslnet.distribution.DataParallel trains over MPI and needs mpi4py with an MPI "
            "library: pip install mpi4py mpich")


def _mpi():
    """mpi4py's MPI module, or ImportError saying what to install."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError(f"{_INSTALL} ({e})") from e
    return MPI


def initialize(job_addresses=None, num_processes=None, process_id=None):
    """Keras 3's ``distribution.initialize``: aslnet's processes find each other through
    the MPI launcher (``mpirun``, ``srun``), so the arguments must be left out or agree
    with what the launcher started."""
    MPI = _mpi()
    comm = MPI.COMM_WORLD
    if job_addresses is not None:
        raise NotImplementedError("initialize(job_addresses=...): aslnet's processes are "
                                  "started and connected by the MPI launcher (mpirun -n N "
                                  "python -m mpi4py script.py); leave job_addresses out")
    for name, given, actual in (("num_processes", num_processes, comm.Get_size()),
                                ("process_id", process_id, comm.Get_rank())):
        if given is not None and int(given) != actual:
            raise ValueError(f"initialize({name}={given}): the MPI launcher started this "
                             f"process with {name} {actual}")


def list_devices(device_type=None):
    """Keras 3's ``list_devices``: one ``'cpu:i'`` per process of the job (each process
    computes on its share of its machine's cores); ``[]`` for 'gpu' or 'tpu'."""
    if device_type is not None and device_type.lower() not in ("cpu",):
        return []
    return list_devices_of(num_processes())


def process_id():
    """This process's rank in the job (0 without a launcher or without mpi4py)."""
    dist = _distribution
    if dist is not None:
        return dist.rank
    return _env_int(("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK"), 0)


def num_processes():
    """The processes of the job (1 without a launcher)."""
    dist = _distribution
    if dist is not None:
        return dist.size
    return _env_int(("PMI_SIZE", "OMPI_COMM_WORLD_SIZE"), 1)


def _env_int(names, default):
    for name in names:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return default


class DataParallel:
    """Keras 3's ``DataParallel``: the whole model on every process, each batch split
    between them, gradients averaged (MPI Allreduce).  ``devices``: None or
    ``list_devices()`` (aslnet places one replica per process).

    ``comm``: the mpi4py communicator (default ``MPI.COMM_WORLD``)."""

    def __init__(self, device_mesh=None, devices=None, auto_shard_dataset=True, comm=None):
        if device_mesh is not None:
            raise NotImplementedError("DataParallel(device_mesh=...): aslnet runs one replica "
                                      "per MPI process; leave device_mesh out")
        MPI = _mpi()
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        if devices is not None and list(devices) != list_devices_of(self.size):
            raise ValueError(f"DataParallel(devices={devices!r}): aslnet places one replica "
                             f"per MPI process: {list_devices_of(self.size)}")
        self.devices = list_devices_of(self.size)
        self.auto_shard_dataset = auto_shard_dataset
        local = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_size = local.Get_size()
        local.Free()
        self._bn_warned = False

    @property
    def batch_dim_name(self):
        """Keras's name of the sharded axis."""
        return "batch"

    def __repr__(self):
        return f"<DataParallel rank {self.rank} of {self.size}>"


def list_devices_of(size):
    """``['cpu:0', ..., 'cpu:size-1']``."""
    return [f"cpu:{i}" for i in range(size)]


def set_distribution(value):
    """Keras 3's ``set_distribution``: a ``DataParallel``, or None (one process)."""
    global _distribution
    if value is not None and not isinstance(value, DataParallel):
        raise TypeError(f"set_distribution: aslnet distributes with DataParallel, got "
                        f"{type(value).__name__}")
    _distribution = value
    backend._set_local_processes(1 if value is None else value.local_size)


def distribution():
    """Keras 3's getter: the distribution set, or None."""
    return _distribution


def _active():
    """The DataParallel with more than one process, else None (one process: no-op)."""
    dist = _distribution
    return dist if dist is not None and dist.size > 1 else None


def is_chief():
    """Whether this process writes files and prints (rank 0, or no distribution)."""
    dist = _distribution
    return dist is None or dist.rank == 0


def _warn_bn_once(dist):
    if not dist._bn_warned and dist.rank == 0:
        warnings.warn("BatchNormalization trains with per-process batch statistics under "
                      "DataParallel (each rank normalises its slice and keeps its own moving "
                      "statistics); BatchNormalization(synchronized=True) uses the global "
                      "batch's", UserWarning, stacklevel=5)
    dist._bn_warned = True
