"""This machine's memory bandwidth, measured: the roofline's other limit.

STREAM's "add" kernel (a = b + c) with NumPy over three arrays of ``mb`` MiB each (far
beyond any cache), ``threads`` Python threads each adding its own contiguous slice (NumPy
releases the GIL inside the ufunc).  Bytes counted as STREAM counts them: two arrays read,
one written (the write-allocate read of ``a`` is not counted, so the figure is STREAM's,
below what the memory bus moves).  Best of ``runs``: other processes only slow a run.

    python -m benchmarks.bandwidth [THREADS ...]     # GB/s as JSON
"""
import json
import sys
import threading
import time

import numpy as np


def measure(threads=(1,), mb=256, runs=9):
    """{threads (str): GB/s (10^9 bytes per second)}."""
    n = (mb << 20) // 4
    a, b, c = (np.full(n, v, np.float32) for v in (0.0, 1.0, 2.0))   # pages touched
    out = {}
    for t in sorted(set(threads)):
        cuts = np.linspace(0, n, t + 1).astype(int)
        parts = [(a[i:j], b[i:j], c[i:j]) for i, j in zip(cuts[:-1], cuts[1:])]
        best = 0.0
        for _ in range(runs):
            start = threading.Barrier(t + 1)

            def add(x, y, z):
                start.wait()
                np.add(y, z, out=x)
            workers = [threading.Thread(target=add, args=p) for p in parts]
            for w in workers:
                w.start()
            start.wait()
            t0 = time.perf_counter()
            for w in workers:
                w.join()
            best = max(best, 3 * 4 * n / (time.perf_counter() - t0) / 1e9)
        out[str(t)] = round(best, 2)
    if not np.all(a[:: max(n // 1000, 1)] == 3.0):
        raise RuntimeError("bandwidth: the add computed a wrong result")
    return out


def main(argv):
    print(json.dumps(measure([int(a) for a in argv] or [1, 2])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
