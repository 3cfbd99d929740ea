"""The frozen-trunk cache of ``fit``: the outputs of the layers below the
first trainable one, computed once per sample and reused in later epochs.

Frozen layers run in inference mode, so they compute a fixed function of the
input: reusing their output gives exactly the results of recomputing it.
``fit`` always splits each training step at the trunk boundary, cache or not,
so caching changes no result (a fused inference group never straddles the
boundary).  Used only when the data tells sample identities and is not
augmented (``data_adapters.num_samples``, ``has_augmentation``).
"""
import os
import shutil
import tempfile
import warnings

import numpy as np

from ..layers import Dropout
from .data_adapters import has_augmentation, num_samples

__all__ = ["TrunkCache", "trunk_start", "make_cache", "features"]


class TrunkCache:
    """Outputs of the frozen trunk (the layers below the first trainable
    one), per sample of one data set.  Frozen layers run in inference mode,
    so they compute a fixed function of the input: computing it once and
    reusing it in later epochs gives exactly the results of recomputing.
    Only used when the data tells sample identities and is not augmented.

    The features live in an unnamed temporary file (in ``directory``, else
    the system's temp dir) when the disk has room: the OS page cache keeps
    them in RAM while RAM is free, and can drop them under memory pressure
    instead of the process growing by the cache's size.  Where no file can
    be had (no room, no ``os.preadv``), they live in memory.  A write error
    (disk full) turns caching off for the rest of the fit: the features are
    then recomputed, with the same results."""

    _DISK_MARGIN = 512 << 20   # leave this much of the disk free

    def __init__(self, n, shape, directory=None, max_bytes=None):
        self.filled = np.zeros(n, bool)
        self._mem = self._file = None
        self._broken = False
        self.input_size = None      # (h, w) of the images the features come from
        self._n, self._directory, self._max_bytes = n, directory, max_bytes
        if shape is None:           # any input size: opened by the first store
            self.shape = None
            return
        self._open(shape)

    def _open(self, shape):
        n, directory = self._n, self._directory
        self.shape = tuple(int(d) for d in shape)
        self.sample_bytes = int(np.prod(self.shape)) * 4
        if hasattr(os, "preadv"):
            try:
                free = shutil.disk_usage(directory or tempfile.gettempdir()).free
                if free - n * self.sample_bytes >= self._DISK_MARGIN:
                    self._file = tempfile.TemporaryFile(dir=directory)
            except OSError:
                self._file = None
        if self._file is None:
            self._mem = np.empty((n,) + self.shape, np.float32)

    def has(self, ids):
        return not self._broken and bool(self.filled[ids].all())

    def lookup(self, ids):
        if not self.has(ids):
            return None
        if self._mem is not None:
            return self._mem[ids]
        out = np.empty((len(ids),) + self.shape, np.float32)
        fd = self._file.fileno()
        for i, j in enumerate(ids):
            got = os.preadv(fd, [memoryview(out[i]).cast("B")], int(j) * self.sample_bytes)
            if got != self.sample_bytes:
                raise OSError(f"frozen-trunk cache: short read ({got} of "
                              f"{self.sample_bytes} bytes)")
        return out

    def store(self, ids, feats, input_size=None):
        if self._broken:
            return
        if self.input_size is None:
            self.input_size = input_size
        if self.shape is None:      # a model of any input size: one size per cache
            if self._max_bytes is not None and \
                    self._n * int(np.prod(feats.shape[1:])) * 4 > self._max_bytes:
                self._broken = True
                return
            self._open(feats.shape[1:])
        if input_size != self.input_size or tuple(feats.shape[1:]) != self.shape:
            # images of another size than the cached ones: off for this data set
            # (recomputed, same results), never features of another size
            self.close()
            self._broken = True
            return
        if self._mem is not None:
            self._mem[ids] = feats
        else:
            feats = np.ascontiguousarray(feats, np.float32)
            try:
                fd = self._file.fileno()
                for i, j in enumerate(ids):
                    data = memoryview(feats[i]).cast("B")
                    if os.pwrite(fd, data, int(j) * self.sample_bytes) != len(data):
                        raise OSError("short write")
            except OSError as e:
                warnings.warn(f"frozen-trunk cache off for the rest of this fit ({e}): "
                              "features are recomputed")
                self.close()
                self._broken = True
                return
        self.filled[ids] = True

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None
        self._mem = None
        self.filled[:] = False


def trunk_start(layers, network):
    """Core index of the first op of the first trainable layer with weights
    (``layers`` after the model's input), if the layers below it can be
    cached (no dropout, no random augmentation layer: the trunk runs in
    inference mode, where they would do nothing, and their outputs differ
    from epoch to epoch; those of a nested model called with training=False
    always run in inference mode, and are cached), else 0; moved down to the edge of a residual block
    when it falls inside one (MobileNetV2: the block's input is the trunk's
    output, its frozen layers run in the training step in inference mode)."""
    inference = getattr(network, "inference", ())   # nested model(x, training=False)
    for k, layer in enumerate(layers):
        if isinstance(layer, Dropout) and layer.rate > 0 and layer not in inference:
            return 0
        if getattr(layer, "_augments", False) and layer not in inference:
            return 0
        if layer.trainable and layer.trainable_weights:
            return network.residual_safe_start(network.first_op(layer)) if k > 0 else 0
    return network.residual_safe_start(network.first_op(layers[-1]))


def make_cache(network, data, start, max_bytes, directory=None):
    """A TrunkCache for ``data`` if caching is possible and fits in
    ``max_bytes``, else None."""
    n = num_samples(data)
    if start == 0 or n is None or has_augmentation(data):
        return None
    shape = network.net.output_shape(start - 1)
    if None in shape:           # a model of any input size: the shape of the first batch
        return TrunkCache(n, None, directory, max_bytes=max_bytes)
    if n * int(np.prod(shape)) * 4 > max_bytes:
        return None
    return TrunkCache(n, shape, directory)


def features(network, xb, ids, cache, start, compute_dtype):
    """The trunk's output for a batch, from the cache or computed (and
    stored): returns (input of core op ``start``, start)."""
    if start == 0:
        return xb, 0
    feats = cache.lookup(ids) if cache is not None and ids is not None else None
    if feats is not None:
        network.input_size = cache.input_size      # what the cached features come from
    else:
        if xb is None:
            raise RuntimeError("frozen-trunk cache: a batch was skipped but is not cached")
        feats = network.inference_forward(xb, compute_dtype, stop=start)
        if cache is not None and ids is not None:
            cache.store(ids, feats, tuple(xb.shape[1:3]))
    return feats, start
