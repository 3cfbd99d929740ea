"""``CoreNetwork``: the one Python object that drives a C network.

A model compiles its chain of layers into an ``aslnet._core.Net`` (one C
op or more per layer), bound to the layers' own weight arrays, so the C
core reads and updates them in place.  This object builds that network,
keeps it in step with what may change behind its back -- trainable flags,
weights changed from Python or by another network, the dtype policy, the
thread count -- and runs batches through it.

Weights changed: every ``Variable`` carries a version (``backend.
new_version()``, bumped by ``assign``, ``set_weights`` and each training
update).  A network remembers the versions it last saw, layer by layer,
and tells the C core only which layers changed (``Net.weights_changed(i)``),
so a fused conv + batch-norm group refolds only when its own weights moved:
after a training step of the tutorial's 23-layer tail, the frozen trunk's
groups keep their folded, reordered weights.
"""
import numpy as np

from .. import _core, backend
from ..layers import Activation, InputLayer, ReLU, core_shape

__all__ = ["CoreNetwork", "check_graph", "merge_source"]

# Batched inference runs the first layers, whose activations are large, one
# image at a time (they then stay in the CPU's caches: the memory-bound
# depthwise convolutions run up to 2.5x faster), and the rest on the whole
# batch (the late 1x1 convolutions are faster on many images).  The switch is
# at the first fused-group boundary (after an activation) below which a
# per-image output was larger than MICRO_BYTES and from which none is (v1:
# after conv_dw_6; MobileNetV2, whose expansions grow again after a stride,
# after block_6's depthwise: 11% faster at batch 32 than after block_3's,
# where a per-image output first fits), and where no merge reads across.  The
# per-image part is a second C network over the same weight arrays; the
# results are those of the whole-batch network (each image is computed by
# the same kernels in the same order).  Not under mixed_bfloat16 (half the
# bytes; measured no faster).
#
# "One image" holds for few threads.  With more, one image's layers are too
# little work for every thread (and each run is a Python call, a fork-join per
# layer): `micro_batch` gives the images per run by thread count, measured on
# a 16-core Xeon (AVX-512, b32, img/s of v1 / v2 224; .dev experiment in the
# session 12 note): 4 threads 1 image 410/496, 4 images 429/570, whole batch
# 433/515; 8 threads 1 image 546/718, 4 images 577/853, whole 623/879; 16
# threads 1 image 779/833, 8 images 801/1065, whole 944/1158.  At 2 threads
# (AVX2 EPYC) 1 and 2 images are equal (v2 207/205), the whole batch slower
# (v2 177).
MICRO_BYTES = 512 << 10
WHOLE_BATCH_FROM_THREADS = 8


def micro_batch(threads):
    """Images per run of the early (per-image) layers at ``threads``
    threads: 1 up to 2 threads, one per thread below
    WHOLE_BATCH_FROM_THREADS, from there None (no split: the whole batch)."""
    if threads >= WHOLE_BATCH_FROM_THREADS:
        return None
    return 1 if threads <= 2 else threads


def _read(layer, reads):
    """The flat layer whose output ``layer`` (as the graph names it) is:
    ``reads`` maps a nested model and its Input (aslnet.models.nesting)."""
    while reads and layer in reads:
        layer = reads[layer]
    return layer


def merge_source(layer, prev, reads=None):
    """The C network is a chain (each op reads the previous op's output) plus
    adds that also read an earlier op's output (their ``source``): ``layer``
    must read ``prev``, the layer before it (None: the model's input), and a
    merge layer also one earlier layer, which is returned (else None).
    ``reads``: a flattened graph's {layer named -> flat layer} (nested models)."""
    reads = [_read(t._layer, reads) for t in layer.output._inputs]
    chain = [l for l in reads if (l is prev if prev is not None
                                  else isinstance(l, InputLayer))]
    others = [l for l in reads if l not in chain]
    if not chain or len(others) != layer._num_inputs - 1:
        raise NotImplementedError(
            f"Layer '{layer.name}' reads {[l.name for l in reads]}, not the layer before it "
            f"('{prev.name if prev is not None else 'the input'}'): aslnet computes chains of "
            "layers with merges (each layer reads the one before it; an Add, Multiply or "
            "Concatenate also an earlier one); parallel branches are not supported")
    if others and isinstance(others[0], InputLayer):
        raise NotImplementedError(f"Layer '{layer.name}' merges the model's input: aslnet's "
                                  "merges read the output of an earlier layer (put a layer, "
                                  "e.g. Rescaling(1.0), after the Input)")
    return others[0] if others else None


def check_graph(layers, reads=None):
    """Refuse (NotImplementedError) a graph the C network cannot compute;
    ``layers``: the model's (flat) layers after its input, in order."""
    for k, layer in enumerate(layers):
        merge_source(layer, layers[k - 1] if k else None, reads)


class CoreNetwork:
    """A C network over ``layers`` (the layers after the model's input),
    computing with the layers' weight arrays (bound, not copied).  A model
    with nested models gives its flattened graph: ``reads`` (see
    ``merge_source``) and ``inference``, the layers whose ops always run in
    inference mode (a nested ``model(x, training=False)``)."""

    def __init__(self, input_shape, layers, min_size=None, reads=None, inference=()):
        self.input_shape = tuple(input_shape)
        self.layers = list(layers)
        self.reads = reads or {}
        self.inference = set(inference)
        shape = core_shape(self.input_shape)
        self.any_size = None in shape
        self.net = (_core.Net(shape, min_size=min_size) if self.any_size and min_size
                    else _core.Net(shape))
        self.index = {}        # layer name -> core indices of its ops
        self._holder = {}      # layer name -> core index of the op holding its weights
        self.adds = {}         # core index of an add -> core index of its source
        for k, layer in enumerate(self.layers):
            prev = self.layers[k - 1] if k else None
            idx = []
            for kind, cfg in self._ops(layer, prev):
                idx.append(self.net.add(kind, **cfg))
                if "source" in cfg:
                    self.adds[idx[-1]] = cfg["source"]
            self.index[layer.name] = idx
            if not layer.weights:
                continue
            holders = [i for i in idx if self.net.params(i)]
            if len(holders) != 1:
                raise RuntimeError(f"internal: layer '{layer.name}' maps to "
                                   f"{len(holders)} parametrised core ops")
            self._holder[layer.name] = holders[0]
            for j, (var, info) in enumerate(zip(layer.weights, self.net.params(holders[0]))):
                self.net.bind_param(holders[0], j, var._value.reshape(info["shape"]))
        self._seen = {l.name: _versions(l) for l in self.layers if l.weights}
        self._flags = self._dtype = self._threads = self._int8 = None
        self._split = self._early = None
        self._scanned = None     # backend._latest_version when the weights were last compared
        self._split_known = False
        self.input_size = None   # (h, w) of the images the features in hand come from

    def _ops(self, layer, prev):
        """``layer``'s C ops (a merge layer's with the core index of its
        other input, the last op of that layer, as ``source``, and whether
        that input is the merge's first)."""
        other = merge_source(layer, prev, self.reads)
        if other is None:
            ops = layer._core_ops()
        else:
            ops = layer._core_ops(source=self.index[other.name][-1],
                                  source_first=_read(layer._inbound[0]._layer,
                                                     self.reads) is other)
        if layer in self.inference:
            ops = [(kind, {**cfg, "inference": True}) for kind, cfg in ops]
        return ops

    num_layers = property(lambda self: self.net.num_layers)

    def residual_safe_start(self, start):
        """The largest core index <= ``start`` that a run can start from: no
        add at or after it reads a source below it - 1 (a residual span is
        never cut; the block's input is then the given x)."""
        moved = True
        while moved:
            moved = False
            for add, source in self.adds.items():
                if add >= start and source < start - 1:
                    start, moved = source + 1, True
        return start

    def first_op(self, layer):
        """Core index of the first op of ``layer``."""
        return self.index[layer.name][0]

    def holder(self, layer):
        """Core index of the op that holds ``layer``'s weights."""
        return self._holder[layer.name]

    # -- keeping the C network in step ------------------------------------
    def sync(self, compute_dtype, int8_ranges=None):
        """Send what changed since the last call: trainable flags, the layers
        whose weights changed (their fused groups refold), the compute dtype
        and the thread count.  ``int8_ranges``: a quantized model's calibrated
        ranges (``Net.ranges``): the network then computes in int8."""
        flags = tuple(layer.trainable for layer in self.layers)
        if flags != self._flags:
            for layer, flag in zip(self.layers, flags):
                for i in self.index[layer.name]:
                    self.net.set_trainable(i, flag)
            self._flags = flags
        latest = backend._latest_version     # (read first: a change during the scan
        if latest != self._scanned:          # is seen next time)
            for layer in self.layers:
                if layer.weights:
                    seen = _versions(layer)
                    if seen != self._seen[layer.name]:
                        self.net.weights_changed(self._holder[layer.name])
                        self._seen[layer.name] = seen
            self._scanned = latest
        if int8_ranges is not None:
            if int8_ranges is not self._int8:
                self.net.ranges(int8_ranges)
                self._int8 = int8_ranges
            compute_dtype = "int8"
        if compute_dtype != self._dtype:
            self.net.set_compute_dtype(compute_dtype)
            self._dtype = compute_dtype
        if backend._num_threads != self._threads:
            self.net.set_num_threads(backend._num_threads)
            self._threads = backend._num_threads

    def _trained(self, start):
        """After a training step from core op ``start``: the weights of the
        trainable layers at or after it moved (optimizer updates; batch
        norm's moving statistics).  New versions tell other networks over the
        same arrays; this one knows already (the C core bumped its own)."""
        for layer in self.layers:
            if layer.trainable and layer.weights and self.index[layer.name][0] >= start:
                for var in layer.weights:
                    var._version = backend.new_version()
                self._seen[layer.name] = _versions(layer)

    # -- running batches ----------------------------------------------------
    def _size(self, x, start):
        """input_size= for a run from core op ``start`` on ``x``: for an
        any-size network and start > 0, the size of the images ``x`` (the
        input of op ``start``) comes from (``self.input_size``)."""
        if start == 0:
            self.input_size = tuple(x.shape[1:3])
            return None
        return self.input_size if self.any_size else None

    def forward(self, x, training=False, start=0, stop=-1):
        size = self._size(x, start)
        return self.net.forward(x, training=training, start=start, stop=stop, input_size=size)

    def train_step(self, x, y, start=0, between=None):
        """One optimizer step on the batch (forward from core op ``start``,
        loss, backward, update): returns (mean loss, predictions).
        ``between(net)``: called between the backward pass and the update
        (data-parallel training averages ``net.grad_buffer()`` there)."""
        size = self._size(x, start)
        if between is None:
            loss, pred = self.net.train_step(x, y, start=start, input_size=size)
        else:
            loss, pred, has_grads = self.net.train_step(x, y, start=start, input_size=size,
                                                        apply=False)
            if has_grads:
                between(self.net)
                self.net.apply_gradients()
        self._trained(start)
        return loss, pred

    def trains_from(self, start):
        """Whether a layer with trainable weights runs at or after core op ``start``."""
        return any(l.trainable and l.trainable_weights and self.index[l.name][0] >= start
                   for l in self.layers)

    def train_step_with(self, x, loss_and_grad, start=0, between=None):
        """One optimizer step with the loss computed by the caller: a training
        forward from core op ``start``, ``loss_and_grad(outputs)`` -> (loss,
        dL/doutputs), ``Net.backward``, ``between(net)`` if given,
        ``Net.apply_gradients`` (skipped, like train_step's, when nothing at
        or after ``start`` trains).  Returns (loss, outputs)."""
        out = self.net.forward(x, training=True, start=start)
        loss, dy = loss_and_grad(out)
        if self.trains_from(start):
            self.net.backward(np.ascontiguousarray(dy, np.float32).reshape(out.shape))
            if between is not None:
                between(self.net)
            self.net.apply_gradients()
            self._trained(start)
        return loss, out

    def set_allreduce(self, fn):
        """Data-parallel training: the synchronized batch norms sum their
        per-channel sums over the ranks with ``fn(buf)`` (in place; None: one
        process, see ``_core.Net.set_allreduce``)."""
        self.net.set_allreduce(fn)

    def empty_step(self, start, between):
        """A data-parallel rank whose slice of the batch is empty: no compute
        but its part (zeros) in the synchronized batch norms' sums, which
        moves their moving statistics as on the other ranks; ``between(net)``
        (it contributes zero gradients) and the update."""
        if self.trains_from(start):
            self.sync(self._dtype or "float32")
            self.net.sync_idle_step(start)
            between(self.net)
            self.net.apply_gradients()
            self._trained(start)

    def inference_forward(self, x, compute_dtype, stop=-1):
        """``forward(x, training=False, stop=stop)``, the layers before the
        per-image split run ``micro_batch(threads)`` images at a time."""
        split = self.micro_split()
        end = self.net.num_layers if stop < 0 else stop
        m = micro_batch(backend.get_num_threads())
        if split is None or m is None or len(x) <= m or compute_dtype != "float32" or \
                self._dtype == "int8":
            return self.forward(x, training=False, start=0, stop=stop)
        self.input_size = tuple(x.shape[1:3])
        k = min(split, end)
        early = self.early_network(split, compute_dtype)
        h = np.concatenate([early.net.forward(x[i:i + m], training=False, stop=k)
                            for i in range(0, len(x), m)])
        return h if k == end else self.net.forward(h, training=False, start=k, stop=stop)

    def micro_split(self):
        """Core index where batched inference switches to the whole batch,
        or None (no large activations: everything on the whole batch)."""
        if self.any_size:     # (the split is chosen by per-image bytes at one size)
            return None
        if not self._split_known:
            split = None
            shapes = [layer._out_shape for layer in self.layers[:-1]]
            if all(None not in shape for shape in shapes):   # (else a nested any-size model)
                sizes = [4 * int(np.prod(shape)) for shape in shapes]
                for k, layer in enumerate(self.layers[:-1]):
                    if max(sizes[:k + 1]) > MICRO_BYTES >= max(sizes[k:]) and \
                            isinstance(layer, (ReLU, Activation)):
                        at = self.first_op(self.layers[k + 1])
                        if self.residual_safe_start(at) == at:
                            split = at
                            break
            self._split, self._split_known = split, True
        return self._split

    def early_network(self, split, compute_dtype):
        """The second C network: the layers before core op ``split``."""
        if self._early is None:
            layers = [l for l in self.layers if self.first_op(l) < split]
            self._early = CoreNetwork(self.input_shape, layers, reads=self.reads,
                                      inference=self.inference)
        self._early.sync(compute_dtype)
        return self._early

    # -- optimizer -----------------------------------------------------------
    def set_optimizer(self, optimizer, reset=False):
        self.net.set_optimizer(optimizer._core_name, **optimizer._core_config())
        if reset:
            self.net.reset_optimizer()

    def fold_counts(self):
        """{layer name: folds} of the fused groups of this network and of its
        per-image network (for tests and benchmarks)."""
        counts = {}
        for net in (self, self._early):
            if net is not None:
                for layer in net.layers:
                    for i in net.index[layer.name]:
                        n = net.net.fold_count(i)
                        if n:
                            counts[layer.name] = counts.get(layer.name, 0) + n
        return counts


def _versions(layer):
    return tuple(v._version for v in layer.weights)
