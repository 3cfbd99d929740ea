"""Dynamic batching: requests that arrive together share one ``predict`` call.

Each request decodes its image(s), then ``submit``s them and waits on the
returned futures.  One thread per process runs the model: it takes what is
queued (at most ``max_batch_size`` images) and, while other requests are
still decoding, waits up to ``max_wait`` seconds for them to join, so a lone
client pays no wait at all.  While one batch computes, the next one gathers.
The queue is bounded (``max_queue`` images): past it ``submit`` raises
``QueueFull`` (HTTP 429 with Retry-After), so memory never grows with load.

The thread starts on first use in the process that serves (never before a
fork: gunicorn forks its workers after the model is loaded), and its first
job is a warm-up batch, after which ``ready`` is true.
"""
import collections
import logging
import os
import threading
import time
from concurrent.futures import Future

import numpy as np

__all__ = ["Batcher", "QueueFull"]


class QueueFull(RuntimeError):
    """The queue holds ``max_queue`` images already: try again shortly."""


class Batcher:
    def __init__(self, predict, input_shape, max_batch_size=16, max_wait=0.005,
                 max_queue=64, on_batch=None):
        for name, v, lo in (("max_batch_size", max_batch_size, 1), ("max_queue", max_queue, 1)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        if not (isinstance(max_wait, (int, float)) and 0 <= max_wait <= 1):
            raise ValueError(f"max_wait must be in [0, 1] seconds, got {max_wait!r}")
        if max_queue < max_batch_size:
            raise ValueError(f"max_queue ({max_queue}) must be at least max_batch_size "
                             f"({max_batch_size})")
        self.predict, self.input_shape = predict, tuple(input_shape)
        self.max_batch_size, self.max_wait, self.max_queue = int(max_batch_size), \
            float(max_wait), int(max_queue)
        self.on_batch = on_batch            # called with each batch's size and seconds
        self.ready = False
        self._pid = None

    def _start(self):
        """(Re)create the queue and thread in this process (after a fork, the
        parent's thread does not exist here)."""
        self._cond = threading.Condition()
        self._queue = collections.deque()
        self._arriving = 0
        self.ready = False
        self._thread = threading.Thread(target=self._run, name="aslnet-batcher", daemon=True)
        self._pid = os.getpid()
        self._thread.start()

    def start(self):
        if self._pid != os.getpid():
            lock = _start_lock
            with lock:
                if self._pid != os.getpid():
                    self._start()
        return self

    @property
    def queued(self):
        return len(self._queue) if self._pid == os.getpid() else 0

    def arriving(self):
        """A context for a request's decoding: the batch thread waits (up to
        max_wait) for requests inside it."""
        self.start()
        return _Arriving(self)

    def submit(self, xs):
        """Futures of the probabilities of each array in ``xs`` (each of
        ``input_shape``); QueueFull when the queue has no room for them all."""
        self.start()
        futures = [Future() for _ in xs]
        with self._cond:
            if len(self._queue) + len(xs) > self.max_queue:
                raise QueueFull(f"server busy: {len(self._queue)} images queued "
                                f"(limit: {self.max_queue})")
            self._queue.extend(zip(xs, futures))
            self._cond.notify_all()
        return futures

    def _take(self):
        with self._cond:
            while not self._queue:
                self._cond.wait()
            deadline = time.monotonic() + self.max_wait
            while len(self._queue) < self.max_batch_size and self._arriving > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            n = min(self.max_batch_size, len(self._queue))
            return [self._queue.popleft() for _ in range(n)]

    def _run(self):
        try:                                # warm-up: the first predict plans the network
            self.predict(np.zeros((1,) + self.input_shape, np.float32))
        except Exception:                   # requests will meet the error and tell it
            logging.getLogger("aslnet.serving").exception("warm-up predict failed")
        self.ready = True
        while True:
            items = self._take()
            items = [(x, f) for x, f in items if f.set_running_or_notify_cancel()]
            if not items:
                continue
            t = time.perf_counter()
            try:
                probs = self.predict(np.stack([x for x, _ in items]))
            except BaseException as e:      # each waiting request gets the error
                for _, f in items:
                    f.set_exception(e)
                continue
            if self.on_batch is not None:
                self.on_batch(len(items), time.perf_counter() - t)
            for (_, f), p in zip(items, probs):
                f.set_result(p)


class _Arriving:
    def __init__(self, batcher):
        self.b = batcher

    def __enter__(self):
        with self.b._cond:
            self.b._arriving += 1

    def __exit__(self, *exc):
        with self.b._cond:
            self.b._arriving -= 1
            self.b._cond.notify_all()


_start_lock = threading.Lock()
