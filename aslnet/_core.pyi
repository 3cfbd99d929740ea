"""Type stub of the C extension ``aslnet._core`` (csrc/binding.c): the aslnet C core.

Shapes are per sample, (h, w, c) (a vector of n features is (1, 1, n)); batches are
float32 arrays (n, h, w, c).  Errors: ``ValueError`` for bad arguments and shapes,
``MemoryError``, ``IndexError`` for a layer/parameter index, ``RuntimeError`` for a closed
or busy network, ``CoreError`` for what oneDNN or the executor refuse.
tests/core/test_stub.py checks that this file and the module list the same names.
"""
from typing import Any, Callable, Literal, TypedDict

import numpy as np
from numpy.typing import ArrayLike, NDArray

_Shape3 = tuple[int, int, int]
_Padding = Literal["valid", "same"]

class CoreError(RuntimeError):
    """An error of the C core (oneDNN, or a call out of order)."""

class _ParamInfo(TypedDict):
    name: str
    shape: tuple[int, ...]
    is_weight: bool

def int8_vnni() -> bool:
    """True if this CPU has VNNI: int8 u8 activations use [0, 255], else [0, 127]."""
def bfloat16_supported() -> bool:
    """True if this CPU runs bfloat16 convolutions natively (AVX512_BF16)."""

def categorical_crossentropy(y_true: ArrayLike, y_pred: ArrayLike) -> NDArray[np.float64]:
    """Per-sample cross-entropy of softmax outputs (samples, classes), train_step's rule."""

def conv_geometry(size: int, kernel: int, stride: int, padding: _Padding = "valid",
                  dilation: int = 1) -> tuple[int, int, int]:
    """(out, pad_before, pad_after) of a convolution along one axis (TF/Keras rule)."""

def layer_output_shape(kind: str, input_shape: _Shape3, **config: Any) -> _Shape3:
    """Per-sample output shape ``Net.add(kind, **config)`` gives on ``input_shape``."""

class Net:
    """A chain of layers computed by the aslnet C core."""

    @property
    def iterations(self) -> int:
        """Optimizer steps taken (settable, 0 .. 2**62)."""
    @iterations.setter
    def iterations(self, value: int) -> None: ...
    @property
    def num_slots(self) -> int:
        """Optimizer slots per trainable weight (0 without an optimizer; order: csrc/aslnet.h)."""
    @property
    def num_layers(self) -> int:
        """Number of layers."""
    @property
    def input_shape(self) -> tuple[int | None, int | None, int]:
        """Per-sample input shape (None: any size in that dimension)."""
    @property
    def input_size(self) -> tuple[int, int] | None:
        """The (h, w) of the last forward or train_step; None before any."""
    @property
    def num_plans(self) -> int:
        """Forwards that had to build primitives (a new input or batch size), for tests."""
    @property
    def planned_sizes(self) -> list[tuple[int, int]]:
        """Input sizes whose shapes and primitives are kept now (any-size nets)."""

    def __init__(self, input_shape: tuple[int | None, int | None, int],
                 min_size: tuple[int, int] | None = None) -> None:
        """A network with no layers on per-sample inputs of ``input_shape`` (h or w None
        or -1: any size; ``min_size``: the smallest input size accepted)."""
    def add(self, kind: str, **config: Any) -> int:
        """Append a layer of ``kind``; its index.  Kinds: conv2d, depthwise_conv2d,
        separable_conv2d (filters, kernel_size, strides, padding, dilation_rate,
        depth_multiplier, use_bias, activation), dense, zero_padding2d,
        batch_normalization, activation (linear, relu, relu6, softmax, sigmoid, tanh,
        swish / silu, relu_args with negative_slope, max_value, threshold), dropout,
        reshape, add / multiply (source: the earlier layer whose output is the second
        input), concatenate (source, source_first: its channels first),
        global_average_pooling2d, global_max_pooling2d, max_pooling2d /
        average_pooling2d (kernel_size = pool_size, strides, padding), rescaling (scale,
        offset), resizing (height, width, interpolation, crop_to_aspect_ratio),
        center_crop (height, width), and, active only in a training forward,
        random_flip (mode, seed), random_affine (rotation, zoom_height, zoom_width,
        shift_height, shift_width, fill_mode, fill_value, interpolation, seed),
        random_contrast (contrast, value_range, seed)."""
    def output_shape(self, i: int, input_size: tuple[int, int] | None = None
                     ) -> tuple[int | None, int | None, int]:
        """Per-sample output shape of layer ``i`` (None where it follows the input size;
        at ``input_size`` if given)."""
    def params(self, i: int) -> list[_ParamInfo]:
        """Parameter descriptions of layer ``i``, Keras order."""
    def get_param(self, i: int, j: int) -> NDArray[np.float32]:
        """Copy of parameter ``j`` of layer ``i``."""
    def set_param(self, i: int, j: int, value: ArrayLike) -> None:
        """Copy ``value`` into parameter ``j`` of layer ``i`` (marks that layer changed)."""
    def bind_param(self, i: int, j: int, array: NDArray[np.float32]) -> None:
        """Use ``array`` (writeable, aligned, C-contiguous float32) as the parameter's storage."""
    def grad(self, i: int, j: int) -> NDArray[np.float32] | None:
        """Gradient of parameter ``j`` of layer ``i`` from the last backward, or None."""
    def set_trainable(self, i: int, trainable: bool) -> None:
        """Freeze or unfreeze layer ``i``."""
    def weights_changed(self, i: int | None = None) -> None:
        """Bound arrays changed: of layer ``i``, or of every layer (None); refold those."""
    def set_num_threads(self, n: int) -> None:
        """Threads for this network's compute (0: all cores; at most 1024)."""
    def set_allreduce(self, f: Callable[[np.ndarray], object] | None) -> None:
        """``f(buf)`` sums the float64 array ``buf`` over the processes of a data-parallel
        job in place; the synchronized batch norms call it in training forwards and
        backwards (aslnet.h, asl_net_set_allreduce).  None: one process."""
    def sync_idle_step(self, start: int) -> None:
        """A rank whose slice of the global batch is empty takes part in the synchronized
        batch norms' sums of a training step from layer ``start`` (zeros), and their
        moving statistics move as on the other ranks."""
    def set_compute_dtype(self, dtype: Literal["float32", "bfloat16", "int8"]) -> None:
        """Compute type of the convolutions ('int8': calibrated fused groups, inference)."""
    def calibrate(self, x: ArrayLike, reset: bool = False) -> None:
        """Record int8 activation ranges: a float32 inference pass over ``x``."""
    def ranges(self, values: ArrayLike | None = None) -> NDArray[np.float32] | None:
        """int8 (min, max) of each layer's input and of the output, shape (layers + 1, 2);
        with ``values``: set them."""
    def forward(self, x: ArrayLike, training: bool = False, start: int = 0,
                stop: int = -1, input_size: tuple[int, int] | None = None
                ) -> NDArray[np.float32]:
        """Layers [start, stop) on ``x``, the input of layer ``start`` (stop -1: to the end)."""
    def backward(self, dy: ArrayLike, need_dx: bool = False) -> NDArray[np.float32] | None:
        """Backward from ``dy`` (the last forward's output gradient); dx if ``need_dx``."""
    def set_optimizer(self, name: Literal["sgd", "adam", "adamw", "rmsprop", "adagrad", "nadam"],
                      learning_rate: float = 0.001, momentum: float = 0.0,
                      nesterov: bool = False, beta_1: float = 0.9, beta_2: float = 0.999,
                      epsilon: float = 1e-7, amsgrad: bool = False, rho: float = 0.9,
                      centered: bool = False, initial_accumulator_value: float = 0.1,
                      weight_decay: float | None = None, clipnorm: float | None = None,
                      clipvalue: float | None = None,
                      global_clipnorm: float | None = None) -> None:
        """Set the optimizer, Keras 3's update rules ('adamw': Adam with weight_decay).
        State of the same layout is kept; of another, dropped (a new optimizer)."""
    def set_learning_rate(self, learning_rate: float) -> None:
        """Change the optimizer's learning rate."""
    def reset_optimizer(self) -> None:
        """Forget the optimizer's slots and iteration count."""
    def apply_gradients(self) -> None:
        """One optimizer step with the gradients of the last backward."""
    def slot(self, i: int, j: int, k: int) -> NDArray[np.float32] | None:
        """Copy of optimizer slot ``k`` of parameter (i, j), or None (order: csrc/aslnet.h;
        Adam: m, v[, v_hat]; SGD: momentum; RMSprop: velocity[, momentum][, average_gradient];
        Adagrad: accumulator; Nadam: m, v)."""
    def set_slot(self, i: int, j: int, k: int, value: ArrayLike) -> None:
        """Set optimizer slot ``k`` of parameter (i, j)."""
    def softmax_output(self) -> int | None:
        """Index of the softmax layer train_step fuses with the cross-entropy, or None."""
    def train_step(self, x: ArrayLike, y: ArrayLike, start: int = 0,
                   input_size: tuple[int, int] | None = None, apply: bool = True
                   ) -> tuple[float, NDArray[np.float32]] | tuple[float, NDArray[np.float32], bool]:
        """Forward, cross-entropy, backward, update on one batch: (loss, predictions);
        ``apply=False``: no update, (loss, predictions, whether gradients were computed)."""
    def grad_buffer(self) -> NDArray[np.float32]:
        """The trainable weights' gradients as one writable float32 view of C memory (what
        apply_gradients reads); stale once the trainable layers change: ask again."""
    def layer_calls(self, i: int) -> tuple[int, int]:
        """(forward, backward) call counts of layer ``i``."""
    def fold_count(self, i: int) -> int:
        """Times the fused group led by conv layer ``i`` folded its batch norm."""
    def buffer_bytes(self) -> int:
        """Bytes of activation, gradient and input buffers held now."""
