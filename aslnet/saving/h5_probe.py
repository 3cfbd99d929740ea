"""HDF5 files that aslnet did not write itself, read once in a child process
before this one parses them.

libhdf5 (1.14.6 and 2.0.0 alike) can crash (SIGSEGV), spin forever or
allocate gigabytes on some corrupt files, inside h5py calls that no Python
code can interrupt: tools/fuzz/fuzz_h5.py finds such inputs within a minute
(tests/fuzz/crashes/).  A Keras user's corrupt ``model.h5`` must give an
exception, not kill their Jupyter kernel or hang their server.  So
``check`` runs this file as a script, in a fresh interpreter with a memory
limit and a time limit, which opens the file and reads everything aslnet
could read from it (every attribute, every dataset, following links); only
when that child finishes does the caller parse the same bytes itself.

aslnet-native files (their SHA-256 checked against the header aslnet wrote)
and h5py objects the caller opened skip this.  One child per distinct
content: the outcome for a digest of the bytes is remembered (a time-out
too: the limit is far above what a sound file needs), so loading the same
file again costs a hash, not a process (about 0.2 s).

A declared size is refused before it is read: a dataset or attribute of
more than ``1 GiB + 16 x the file's size`` bytes is not something Keras
writes (its weights are stored uncompressed), and reading it is what took
4 GB from a 44 KB corrupt file in CI.

Run as a script (the child), it imports only the standard library, NumPy and
h5py: ``python h5_probe.py PATH|- SIZE_LIMIT SECONDS PARENT_PID`` ("-": the bytes on
stdin; SECONDS: its CPU-time limit; it dies with its parent).
Exit status 0: read through (ordinary read errors are the parent's to
report); 2: refused, the reason on stdout; 3: out of memory."""
import hashlib
import math
import re
import os
import subprocess
import sys

TIMEOUT_S = 30.0          # plus one second per 50 MB; the fuzz harness lowers it
_SEEN = {}                # sha256 of content -> the child's (exit status, stdout, stderr)
_SEEN_MAX = 64
_TIMED_OUT = 1000         # the exit status remembered for a child stopped at its limit


def size_limit(nbytes):
    """Bytes one dataset or attribute may declare in a file of ``nbytes``."""
    return (1 << 30) + 16 * nbytes


def _digest(path, data):
    if data is not None:
        return hashlib.sha256(data).digest()
    from ..utils.file_digest import sha256_stream
    with open(path, "rb") as fh:
        return sha256_stream(fh)[1]


def check(where, path=None, data=None):
    """None when the HDF5 file at ``path`` (or the bytes ``data``) reads
    through in a child process; else why not, as a sentence for the
    caller's ModelFileError."""
    if not sys.executable:        # an embedding without an interpreter to start: trust it
        return None
    digest = _digest(path, data)
    nbytes = len(data) if data is not None else os.path.getsize(path)
    if digest in _SEEN:
        return _reason(*_SEEN[digest], where, nbytes)
    import h5py                   # the child must find the h5py this process uses
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    site = os.path.dirname(os.path.dirname(os.path.abspath(h5py.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (site, env.get("PYTHONPATH")) if p)
    timeout = TIMEOUT_S + nbytes / 50e6
    cmd = [sys.executable, os.path.abspath(__file__),
           "-" if data is not None else os.fspath(path), str(size_limit(nbytes)),
           str(math.ceil(timeout)), str(os.getpid())]
    try:
        proc = subprocess.run(cmd, input=data, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        proc = subprocess.CompletedProcess(cmd, _TIMED_OUT, f"{timeout:.0f}".encode(), b"")
    except OSError as e:          # cannot start a process here (limits)
        _warn(e, where)
        return None
    outcome = (proc.returncode, proc.stdout.decode("utf8", "replace").strip(),
               proc.stderr.decode("utf8", "replace").strip().splitlines()[-1:])
    if len(_SEEN) >= _SEEN_MAX:
        _SEEN.pop(next(iter(_SEEN)))
    _SEEN[digest] = outcome
    return _reason(*outcome, where, nbytes)


def _reason(returncode, out, tail, where, nbytes):
    if returncode == 0:
        return None
    if returncode == _TIMED_OUT:
        return (f"{where} is corrupt: libhdf5 did not finish reading it in {out} s (it "
                "spins on some damaged files; read in a separate process, which was "
                "stopped)")
    if returncode == 2:
        return f"{where} is corrupt or not a Keras file: {out}"
    if returncode == 3:
        return (f"{where} is corrupt or too large to read: reading it ran out of memory "
                f"(more than {size_limit(nbytes) / 2**30:.1f} GiB)")
    if returncode < 0:
        return (f"{where} is corrupt: libhdf5 crashed reading it (signal {-returncode}, "
                "in a separate process: nothing was lost here)")
    _warn(f"the process reading it failed (exit {returncode}"
          f"{': ' + tail[0] if tail else ''})", where)
    return None


def _warn(why, where):
    """The check itself could not run (no h5py in a fresh interpreter, no
    processes allowed): the file is read as Keras would, directly."""
    import warnings
    warnings.warn(f"aslnet could not check {where} in a separate process ({why}); "
                  "reading it directly", RuntimeWarning, stacklevel=5)


# ---------------------------------------------------------------------------
# The child
# ---------------------------------------------------------------------------
class _Refused(Exception):
    pass


def _declared(shape, dtype, what, limit):
    n = dtype.itemsize if dtype is not None else 1
    for d in shape or ():
        n *= int(d)
    if n > limit:
        raise _Refused(f"{what} declares {n} bytes ({'x'.join(map(str, shape))} of "
                       f"{dtype}), more than {limit} bytes for a file of this size")


def _read(fn, *args):
    """fn(*args), its errors swallowed (None; the parent reports them, with h5py's
    message) but for a refusal and memory: a MemoryError, or libhdf5's own allocation
    failure (its error stack says "can't allocate", "memory allocation failed"...),
    which in the parent, without this process's memory limit, could take gigabytes
    before failing."""
    try:
        return fn(*args)
    except (MemoryError, _Refused):
        raise
    except Exception as e:
        if _ALLOC.search(str(e)):
            raise MemoryError(str(e)) from e
        return None


_ALLOC = re.compile(r"(?i)alloc(?:ate|ation)\b.*fail|can'?t alloc|unable to alloc|"
                    r"no space available for alloc|out of memory")


def _attribute_names(obj, seen):
    if obj.id in seen:
        return None
    seen.add(obj.id)
    return list(obj.attrs)


def _attribute(obj, name, limit):
    aid = obj.attrs.get_id(name)
    _declared(aid.shape, aid.dtype, f"attribute {name!r} of {obj.name}", limit)
    return obj.attrs[name]


def _dataset(obj, limit):
    _declared(obj.shape, obj.dtype, f"dataset {obj.name}", limit)
    return obj[()]


def _walk(f, limit):
    """Every attribute and dataset reachable from ``f``, links followed, each object
    once."""
    import h5py
    seen, stack = set(), [f]
    while stack:
        obj = stack.pop()
        names = _read(_attribute_names, obj, seen)
        if names is None:         # seen before, or not readable
            continue
        for name in names:
            _read(_attribute, obj, name, limit)
        if isinstance(obj, h5py.Dataset):
            _read(_dataset, obj, limit)
        elif isinstance(obj, h5py.Group):
            for key in _read(list, obj) or ():
                child = _read(obj.__getitem__, key)
                if child is not None:
                    stack.append(child)


def _bound_to_parent(cpu_seconds, parent):
    """The child must not outlive its time limit, even when its parent cannot stop
    it (a parent killed meanwhile, as libFuzzer kills a slow input): the kernel ends it
    after ``cpu_seconds`` of CPU time, and when the parent dies (Linux)."""
    try:
        import resource
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds + 1, cpu_seconds + 2))
    except (ImportError, OSError, ValueError):
        pass
    try:
        import ctypes
        import signal
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)      # PR_SET_PDEATHSIG
        if os.getppid() != parent:                       # the parent died before that
            os._exit(9)
    except (OSError, AttributeError):
        pass


def _limit_memory(extra):
    """Address space: what the interpreter has mapped now, plus ``extra``."""
    try:
        import resource
        with open("/proc/self/status") as fh:
            vm = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        want = vm + extra
        if hard != resource.RLIM_INFINITY:
            want = min(want, hard)
        resource.setrlimit(resource.RLIMIT_AS, (want, hard))
    except (ImportError, OSError, ValueError, StopIteration):
        pass


def _child(argv):
    source, limit = argv[0], int(argv[1])
    _bound_to_parent(int(argv[2]), int(argv[3]))
    import io

    import h5py
    import numpy  # noqa: F401  (mapped before the limit is set)
    data = sys.stdin.buffer.read() if source == "-" else None
    _limit_memory(limit + (512 << 20))
    try:
        try:
            f = h5py.File(io.BytesIO(data) if data is not None else source, "r")
        except Exception:
            return 0              # not openable: the parent says so, with h5py's message
        with f:
            _walk(f, limit)
    except _Refused as e:
        print(e)
        return 2
    except MemoryError:
        return 3
    return 0


if __name__ == "__main__":
    del sys.path[0]               # this folder: its modules must not shadow others
    sys.exit(_child(sys.argv[1:]))
