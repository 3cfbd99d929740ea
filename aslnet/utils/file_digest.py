"""The one digest of files in aslnet (standard library only)."""
import hashlib


def sha256_stream(fh, start=0):
    """(length, sha256 digest) of the bytes of the binary file ``fh`` from ``start`` on,
    read in 1 MiB chunks: the one digest of files in aslnet (integrity headers, the h5
    probe's memory, batch jobs' input manifests)."""
    h, n = hashlib.sha256(), 0
    fh.seek(start)
    while True:
        chunk = fh.read(1 << 20)
        if not chunk:
            return n, h.digest()
        h.update(chunk)
        n += len(chunk)
