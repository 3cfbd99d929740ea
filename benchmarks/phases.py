"""Where the tutorial's ``fit`` spends its time, read from the outside (issue 18 item 2).

Run by ``python -m benchmarks.peers.aslnet phases`` (``benchmarks.run --only phases``), in
the aslnet peer's process; it uses aslnet's public API only (``fit``'s callbacks, the
flows' ``__getitem__``, ``save``), so the phases come from timings around its calls:

- decode: one pass over the train and validation flows before ``fit`` (JPEG decode,
  resize, ``preprocess_input``); it fills aslnet's decoded-image cache, so ``fit`` then
  reads those images from memory instead of decoding them in its first epoch;
- trunk pass: the frozen layers run once over every training and validation image (aslnet
  caches their output): the first epoch's training time less a later epoch's (median),
  plus the same for validation;
- tail epochs: the trainable layers' training steps, every epoch (the first epoch's
  counted as the median of the others);
- validation: the trainable layers' forward pass over the validation images, every epoch;
- fit, other: ``fit``'s wall time outside its epochs' training and validation (setup,
  callbacks, the caches' clean-up);
- save: ``model.save`` to an .h5 file, as the tutorial; test: ``predict`` on the test flow.

It needs two epochs or more (the trunk pass is the difference between the first and the
others).  ``work()`` counts the arithmetic the same fit needs, so that the caller can
state the time it would take at the machine's measured peak.
"""
import statistics
import time

from aslnet.callbacks import Callback

CONV_KINDS = ("Conv2D", "DepthwiseConv2D", "Dense")


def layer_flops(layer):
    """Forward FLOP per image of a Conv2D, DepthwiseConv2D or Dense layer (2 per
    multiply-add, from its kernel's shape and its output's), 0 for every other layer:
    batch norms, activations, padding and pooling are a few FLOP per element, under 1%
    of MobileNet's convolutions."""
    kind = type(layer).__name__
    if kind not in CONV_KINDS:
        return 0
    kernel = layer.get_weights()[0].shape
    out = layer.output_shape                   # (None, H, W, C) or (None, units)
    if kind == "Dense":
        return 2 * kernel[0] * kernel[1]
    h, w = out[1], out[2]
    kh, kw, cin, k = kernel                    # Conv2D: k = filters; depthwise: multiplier
    return 2 * h * w * kh * kw * cin * k


def work(model, train_images, valid_images, epochs):
    """The arithmetic of the tutorial's fit (GFLOP), as aslnet does it: the frozen trunk
    (the layers below the first trainable one) forward once for every training and
    validation image; the trainable tail forward + backward (weight gradient and input
    gradient: each as many multiply-adds as the forward) for every training image and
    epoch, and forward for every validation image and epoch."""
    first = next(i for i, layer in enumerate(model.layers) if layer.trainable and
                 type(layer).__name__ != "InputLayer")
    trunk = sum(layer_flops(layer) for layer in model.layers[:first]) / 1e9
    tail = sum(layer_flops(layer) for layer in model.layers[first:]) / 1e9
    return {"first_trainable": model.layers[first].name,
            "trunk_gflop_per_image": trunk, "tail_gflop_per_image": tail,
            "gflop": {"trunk pass": trunk * (train_images + valid_images),
                      "tail epochs": 3 * tail * train_images * epochs,
                      "validation": tail * valid_images * epochs}}


class PhaseTimer(Callback):
    """Per epoch: the training time (epoch begin to validation begin, or to epoch end)
    and the validation time (``on_test_begin`` to ``on_test_end`` inside ``fit``)."""

    def __init__(self):
        super().__init__()
        self.train_s, self.valid_s = [], []
        self._t = self._v = None

    def on_epoch_begin(self, epoch, logs=None):
        self._t, self._v = time.perf_counter(), None

    def on_test_begin(self, logs=None):
        if self._t is not None:                # validation inside fit
            self.train_s.append(time.perf_counter() - self._t)
            self._v = time.perf_counter()

    def on_test_end(self, logs=None):
        if self._v is not None:
            self.valid_s.append(time.perf_counter() - self._v)

    def on_epoch_end(self, epoch, logs=None):
        if self._v is None:                    # no validation this epoch
            self.train_s.append(time.perf_counter() - self._t)
        self._t = None


def breakdown(timer, decode_s, fit_s, save_s, test_s):
    """{phase: seconds} from the timer of a fit of two epochs or more."""
    tr, va = timer.train_s, timer.valid_s
    if len(tr) < 2:
        raise ValueError(f"the phases need 2 epochs or more (got {len(tr)}): the trunk "
                         "pass is the first epoch's time less a later one's")
    tail = statistics.median(tr[1:])
    val = statistics.median(va[1:]) if len(va) >= 2 else None
    trunk = max(tr[0] - tail, 0.0) + (max(va[0] - val, 0.0) if val is not None else 0.0)
    out = {"decode": decode_s, "trunk pass": trunk,
           "tail epochs": tail * len(tr),
           "validation": val * len(va) if val is not None else sum(va),
           "fit, other": max(fit_s - sum(tr) - sum(va), 0.0),
           "save": save_s, "test": test_s}
    return {"phases_s": out, "epoch_train_s": tr, "epoch_valid_s": va, "fit_s": fit_s}
