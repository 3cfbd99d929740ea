"""Files on disk: atomic writes through a temporary file next to the
target (and the removal of stale temporaries a killed save left), the
integrity header of aslnet-native files, opening a file for reading with
clear errors (format sniffing: HDF5 signature, Keras 3 zip archives).
``atomic_file`` is the one home of the atomic write; ``atomic_h5`` and
Keras 3's archives (``keras3_format``) write through it."""
import contextlib
import errno
import hashlib
import os
import re
import secrets
import socket
import struct
import time

import h5py

from . import h5_probe
from ..utils.file_digest import sha256_stream

KERAS_H5_SUFFIXES = (".h5", ".hdf5", ".keras")   # tf.keras 2.x's _is_hdf5_filepath
# aslnet-native files: the HDF5 user block (bytes HDF5 leaves to applications
# before its superblock) starts with _MAGIC, the length of what follows the
# user block and its SHA-256 -- checked before libhdf5 parses anything.
_USERBLOCK = 512
_MAGIC = b"ASLNET\x00\x01"
_HEADER = struct.Struct("<8sQ32s")


class ModelFileError(ValueError, OSError):
    """A file that is not a readable aslnet/Keras model or weights file
    (corrupt, truncated, not HDF5, no model config).  Both a ``ValueError``
    and an ``OSError`` (as h5py's and tf.keras's errors for such files)."""


# ---------------------------------------------------------------------------
# Temporary files
# ---------------------------------------------------------------------------
# A save writes ".<target>.aslnet-<host>-<pid>-<random>.tmp" next to the
# target.  A save killed before its os.replace (kill -9, power loss) leaves
# it behind; the next save to the same target removes those that are stale:
# written on this host by a process that is gone, or (another host's, whose
# process cannot be asked) untouched for _STALE_SECONDS.  A live process's
# temporary file on this host is never removed, however old.
_TMP_PREFIX = "aslnet"
_TMP_NAME = re.compile(r"aslnet-([0-9a-f]{8})-([0-9]+)-[0-9a-f]{8}")
_STALE_SECONDS = 24 * 3600


def _host_tag():
    """8 hex digits naming this host (process ids mean nothing on another)."""
    return hashlib.sha256(socket.gethostname().encode("utf8", "surrogateescape")).hexdigest()[:8]


def _create_temp(d, base):
    """A new empty file for a save of ``d/base``, named as above."""
    host, pid = _host_tag(), os.getpid()
    for _ in range(100):
        tmp = os.path.join(d, f".{base}.{_TMP_PREFIX}-{host}-{pid}-{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                         0o600)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(errno.EEXIST, "No usable temporary file name", os.path.join(d, base))


def _process_gone(pid):
    """True only when process ``pid`` of this host is known not to run (no such
    process, or a zombie); anything uncertain counts as running."""
    if os.name != "posix" or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)                     # signal 0: checks only, sends nothing
    except ProcessLookupError:
        return True
    except (OSError, OverflowError):        # EPERM: another user's live process
        return False
    try:                                    # killed but not yet reaped by its parent
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rpartition(b")")[2].split()[:1]
        return state in ([b"Z"], [b"X"])
    except (OSError, IndexError):
        return False


def stale_temps(d, base, now=None):
    """Paths of the stale temporary files that saves of ``d/base`` left."""
    prefix, suffix = f".{base}.", ".tmp"
    host = _host_tag()
    now = time.time() if now is None else now
    out = []
    with os.scandir(d) as entries:
        for entry in entries:
            name = entry.name
            if not (name.startswith(prefix) and name.endswith(suffix)):
                continue
            m = _TMP_NAME.fullmatch(name[len(prefix):len(name) - len(suffix)])
            if m is None or not entry.is_file(follow_symlinks=False):
                continue
            if m.group(1) == host:
                stale = _process_gone(int(m.group(2)))
            else:
                stale = now - entry.stat(follow_symlinks=False).st_mtime > _STALE_SECONDS
            if stale:
                out.append(entry.path)
    return out


def _remove_stale_temps(d, base):
    """Best effort: a file another save removes first, or a directory that
    cannot be listed, is no reason to fail this save."""
    with contextlib.suppress(OSError):
        for tmp in stale_temps(d, base):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


# ---------------------------------------------------------------------------
# Integrity header (aslnet-native files)
# ---------------------------------------------------------------------------

def _write_integrity_header(path):
    with open(path, "r+b") as fh:
        n, digest = sha256_stream(fh, _USERBLOCK)
        fh.seek(0)
        fh.write(_HEADER.pack(_MAGIC, n, digest))


def _check_integrity_header(path, what):
    """For aslnet-native files: the payload's length and SHA-256 as saved
    (True once checked); False for files without the header."""
    with open(path, "rb") as fh:
        head = fh.read(_HEADER.size)
        if len(head) < _HEADER.size or not head.startswith(_MAGIC):
            return False
        _, n, digest = _HEADER.unpack(head)
        got_n, got_digest = sha256_stream(fh, _USERBLOCK)
    if got_n != n:
        raise ModelFileError(f"{what} file {path} is truncated or extended: {got_n} bytes of "
                             f"data after the header, {n} when saved")
    if got_digest != digest:
        raise ModelFileError(f"{what} file {path} is corrupt: its SHA-256 differs from the "
                             "one recorded when it was saved (or it was modified after "
                             "saving; edit .h5 files instead)")
    return True


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------
def _umask():
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _fsync_dir(d):
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _is_keras_h5_path(path):
    return os.fspath(path).lower().endswith(KERAS_H5_SUFFIXES)


@contextlib.contextmanager
def atomic_file(filepath, overwrite):
    """The path of a new temporary file to write; it becomes ``filepath``
    (keeping that file's permissions) only once the block completes."""
    path = os.fspath(filepath)
    if os.path.islink(path):
        path = os.path.realpath(path)          # write through a symlink, as h5py would
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "Cannot save to a directory", path)
    if not overwrite and os.path.lexists(path):
        raise FileExistsError(errno.EEXIST, "File exists and overwrite=False", path)
    if os.path.exists(path) and not os.access(path, os.W_OK):
        # replacing would bypass the file's own permissions: refuse, as writing would
        raise PermissionError(errno.EACCES, "Permission denied", path)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    try:
        mode = os.stat(path).st_mode & 0o7777
    except OSError:
        mode = 0o666 & ~_umask()
    _remove_stale_temps(d, os.path.basename(path))
    tmp = _create_temp(d, os.path.basename(path))
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDWR)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, mode)
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)              # fails if someone created path meanwhile
            except FileExistsError:
                raise FileExistsError(errno.EEXIST, "File exists and overwrite=False",
                                      path) from None
            except OSError:                     # no hard links here
                if os.path.lexists(path):
                    raise FileExistsError(errno.EEXIST, "File exists and overwrite=False",
                                          path) from None
                os.replace(tmp, path)
            else:
                os.unlink(tmp)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(d)


@contextlib.contextmanager
def atomic_h5(filepath, overwrite):
    """An h5py.File to write; it becomes ``filepath`` only once complete.
    Paths without a Keras suffix get aslnet's native integrity header."""
    native = not _is_keras_h5_path(filepath)
    with atomic_file(filepath, overwrite) as tmp:
        with h5py.File(tmp, "w", userblock_size=_USERBLOCK if native else 0) as f:
            yield f
            f.flush()
        if native:
            _write_integrity_header(tmp)


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------
# What h5py/json raise on damaged content while a file is read.
READ_ERRORS = (OSError, KeyError, TypeError, AttributeError, IndexError, ValueError,
                RuntimeError)


def _check_readable(path, what):
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, f"No file or directory found at {path}", path)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, f"{path} is a directory, not an aslnet/Keras "
                                "file (TensorFlow SavedModel directories and Keras 3's "
                                "unzipped model directories are not supported)", path)


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _hdf5_signature(fh):
    """HDF5's signature at offset 0, 512, 1024, 2048 ... (where its superblock
    may start), read without libhdf5 (h5py.is_hdf5 parses the superblock)."""
    size = os.fstat(fh.fileno()).st_size
    offset = 0
    while offset + len(_HDF5_SIGNATURE) <= size:
        fh.seek(offset)
        if fh.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE:
            return True
        offset = 512 if offset == 0 else 2 * offset
    return False


def check_foreign_h5(where, path=None, data=None):
    """HDF5 content aslnet did not write (no integrity header) read through
    once in a separate process first (``h5_probe``): libhdf5 can crash, hang
    or exhaust memory on corrupt files."""
    reason = h5_probe.check(where, path=path, data=data)
    if reason is not None:
        raise ModelFileError(reason)


def sniff(filepath, what):
    """What a file is, from its content (never its suffix): "h5" (an HDF5
    file, aslnet's or Keras's), "zip" (a zip archive: Keras 3's .keras) or
    None (neither)."""
    if isinstance(filepath, h5py.Group):
        return "h5"
    path = os.fspath(filepath)
    _check_readable(path, what)
    try:
        with open(path, "rb") as fh:
            if _hdf5_signature(fh):
                return "h5"
            fh.seek(0)
            head = fh.read(4)
    except OSError as e:
        raise ModelFileError(f"Cannot read {what} file {path}: {e}") from e
    # a local file header, or the end-of-central-directory record of an empty archive
    return "zip" if head in (b"PK\x03\x04", b"PK\x05\x06") else None


@contextlib.contextmanager
def open_h5(filepath, what):
    """Open a model/weights file for reading, with clear errors."""
    if isinstance(filepath, h5py.Group):
        yield filepath, getattr(filepath.file, "filename", "<h5py group>")
        return
    path = os.fspath(filepath)
    if sniff(path, what) != "h5":
        raise ModelFileError(f"{path} is not an aslnet/Keras {what} file: no HDF5 signature "
                             f"(size {os.path.getsize(path)} bytes; corrupt, truncated or "
                             "another format)")
    try:
        if not _check_integrity_header(path, what):
            check_foreign_h5(path, path=path)
    except ModelFileError:
        raise
    except OSError as e:
        raise ModelFileError(f"Cannot read {what} file {path}: {e}") from e
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ModelFileError(f"Cannot open {what} file {path}: it is corrupt or truncated "
                             f"({e})") from e
    with f:
        yield f, path
