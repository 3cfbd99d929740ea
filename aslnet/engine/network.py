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
from ..layers import Activation, ReLU, core_shape

__all__ = ["CoreNetwork"]

# Batched inference runs the first layers, whose activations are large, one
# image at a time (they then stay in the CPU's caches: the memory-bound
# depthwise convolutions run up to 2.5x faster), and the rest on the whole
# batch (the late 1x1 convolutions are faster on many images).  The switch is
# at the first fused-group boundary (after an activation) below which a
# per-image output was larger than MICRO_BYTES and from which it is not.  The
# per-image part is a second C network over the same weight arrays; the
# results are those of the whole-batch network (each image is computed by
# the same kernels in the same order).  Not under mixed_bfloat16 (half the
# bytes; measured no faster).
MICRO_BYTES = 512 << 10


class CoreNetwork:
    """A C network over ``layers`` (the layers after the model's input),
    computing with the layers' weight arrays (bound, not copied)."""

    def __init__(self, input_shape, layers):
        self.input_shape = tuple(input_shape)
        self.layers = list(layers)
        self.net = _core.Net(core_shape(self.input_shape))
        self.index = {}        # layer name -> core indices of its ops
        self._holder = {}      # layer name -> core index of the op holding its weights
        for layer in self.layers:
            idx = [self.net.add(kind, **cfg) for kind, cfg in layer._core_ops()]
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
        self._flags = self._dtype = self._threads = None
        self._split = self._early = None
        self._split_known = False

    num_layers = property(lambda self: self.net.num_layers)

    def first_op(self, layer):
        """Core index of the first op of ``layer``."""
        return self.index[layer.name][0]

    def holder(self, layer):
        """Core index of the op that holds ``layer``'s weights."""
        return self._holder[layer.name]

    # -- keeping the C network in step ------------------------------------
    def sync(self, compute_dtype):
        """Send what changed since the last call: trainable flags, the layers
        whose weights changed (their fused groups refold), the compute dtype
        and the thread count."""
        flags = tuple(layer.trainable for layer in self.layers)
        if flags != self._flags:
            for layer, flag in zip(self.layers, flags):
                for i in self.index[layer.name]:
                    self.net.set_trainable(i, flag)
            self._flags = flags
        for layer in self.layers:
            if layer.weights:
                seen = _versions(layer)
                if seen != self._seen[layer.name]:
                    self.net.weights_changed(self._holder[layer.name])
                    self._seen[layer.name] = seen
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
    def forward(self, x, training=False, start=0, stop=-1):
        return self.net.forward(x, training=training, start=start, stop=stop)

    def train_step(self, x, y, start=0):
        """One optimizer step on the batch (forward from core op ``start``,
        loss, backward, update): returns (mean loss, predictions)."""
        loss, pred = self.net.train_step(x, y, start=start)
        self._trained(start)
        return loss, pred

    def train_step_with(self, x, loss_and_grad, start=0):
        """One optimizer step with the loss computed by the caller: a training
        forward from core op ``start``, ``loss_and_grad(outputs)`` -> (loss,
        dL/doutputs), ``Net.backward``, ``Net.apply_gradients`` (skipped,
        like train_step's, when nothing at or after ``start`` trains).
        Returns (loss, outputs)."""
        out = self.net.forward(x, training=True, start=start)
        loss, dy = loss_and_grad(out)
        if any(l.trainable and l.trainable_weights and self.index[l.name][0] >= start
               for l in self.layers):
            self.net.backward(np.ascontiguousarray(dy, np.float32).reshape(out.shape))
            self.net.apply_gradients()
            self._trained(start)
        return loss, out

    def inference_forward(self, x, compute_dtype, stop=-1):
        """``forward(x, training=False, stop=stop)``, the layers before the
        per-image split run one image at a time."""
        split = self.micro_split()
        end = self.net.num_layers if stop < 0 else stop
        if split is None or len(x) < 2 or compute_dtype != "float32":
            return self.net.forward(x, training=False, start=0, stop=stop)
        k = min(split, end)
        early = self.early_network(split, compute_dtype)
        h = np.concatenate([early.net.forward(x[i:i + 1], training=False, stop=k)
                            for i in range(len(x))])
        return h if k == end else self.net.forward(h, training=False, start=k, stop=stop)

    def micro_split(self):
        """Core index where batched inference switches to the whole batch,
        or None (no large activations: everything on the whole batch)."""
        if not self._split_known:
            big, split = False, None
            for k, layer in enumerate(self.layers[:-1]):
                size = 4 * int(np.prod(layer._out_shape))
                big = big or size > MICRO_BYTES
                if big and size <= MICRO_BYTES and isinstance(layer, (ReLU, Activation)):
                    split = self.first_op(self.layers[k + 1])
                    break
            self._split, self._split_known = split, True
        return self._split

    def early_network(self, split, compute_dtype):
        """The second C network: the layers before core op ``split``."""
        if self._early is None:
            layers = [l for l in self.layers if self.first_op(l) < split]
            self._early = CoreNetwork(self.input_shape, layers)
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
