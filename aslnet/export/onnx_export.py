"""An aslnet model as an ONNX graph (inference: BatchNormalization with its
moving statistics, Dropout as identity).

The graph takes and returns Keras's layout (NHWC images); inside, every
(h, w, c) tensor is NCHW, ONNX's convolution layout, so the only
transposes are after the input, around a Reshape/Flatten of an image-shaped
tensor (Keras reshapes in NHWC order), and before an image-shaped output.
The batch dimension is symbolic (``batch``), and so are unknown input
sizes.  The graph is written layer by layer from each layer's inbound
tensors, so layers with several inputs (``Add``, ``Multiply``,
``Concatenate``) are one more entry in ``_CONVERTERS``.
"""
import numpy as np

_TO_NCHW, _TO_NHWC = [0, 3, 1, 2], [0, 2, 3, 1]
DEFAULT_OPSET = 17
MIN_OPSET = 13


def _onnx():
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError as e:
        raise ImportError("model.export(format='onnx') needs the onnx package: "
                          "pip install 'aslnet[export]' (or pip install onnx)") from e
    return onnx, helper, numpy_helper


class _Graph:
    """Nodes and initializers with unique names; tensors are (name, rank),
    rank being the Keras rank without the batch (3: NCHW inside)."""

    def __init__(self, helper, numpy_helper):
        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes, self.inits, self._names = [], [], set()

    def name(self, base):
        base = base.replace("/", "_")
        name, i = base, 0
        while name in self._names:
            i += 1
            name = f"{base}_{i}"
        self._names.add(name)
        return name

    def const(self, base, value, dtype=np.float32):
        name = self.name(base)
        self.inits.append(self.numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def op(self, op_type, inputs, base, **attrs):
        out = self.name(base)
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [out],
                                                name=self.name(f"{base}/{op_type}"), **attrs))
        return out


def _activation(g, x, activation, rank, base):
    if activation in (None, "linear"):
        return x
    if activation == "relu":
        return g.op("Relu", [x], f"{base}/relu")
    if activation == "relu6":
        return g.op("Clip", [x, g.const(f"{base}/zero", 0.0), g.const(f"{base}/six", 6.0)],
                    f"{base}/relu6")
    if activation == "softmax":       # Keras: the last axis, which is C (axis 1) in NCHW
        return g.op("Softmax", [x], f"{base}/softmax", axis=1 if rank == 3 else -1)
    raise NotImplementedError(f"{base}: activation {activation!r} has no ONNX export")


def _same_pads(layer, in_shape):
    """TF's 'same' padding, explicit when the input size is known: total
    max((ceil(n/s) - 1)*s + k - n, 0), the odd pixel at the end."""
    pads_begin, pads_end = [], []
    for n, k, s in zip(in_shape[:2], layer.kernel_size, layer.strides):
        if n is None:
            return None
        total = max((-(-n // s) - 1) * s + k - n, 0)
        pads_begin.append(total // 2)
        pads_end.append(total - total // 2)
    return pads_begin + pads_end


def _conv(g, layer, x, weight, group, base):
    attrs = dict(kernel_shape=list(weight.shape[2:]), strides=list(layer.strides),
                 group=group)
    if layer.padding == "same":
        pads = _same_pads(layer, layer._in_shape)
        if pads is None:
            attrs["auto_pad"] = "SAME_UPPER"        # TF's rule for unknown sizes
        else:
            attrs["pads"] = pads
    else:
        attrs["pads"] = [0, 0, 0, 0]
    inputs = [x, g.const(f"{base}/kernel", weight)]
    if layer.use_bias:
        inputs.append(g.const(f"{base}/bias", layer.get_weights()[1]))
    y = g.op("Conv", inputs, f"{base}/conv", **attrs)
    return _activation(g, y, layer.activation, 3, base)


def _conv2d(g, layer, xs):
    kernel = layer.get_weights()[0]                               # (kh, kw, cin, cout)
    return _conv(g, layer, xs[0], kernel.transpose(3, 2, 0, 1), 1, layer.name)


def _depthwise(g, layer, xs):
    kernel = layer.get_weights()[0]                               # (kh, kw, c, m)
    kh, kw, c, m = kernel.shape      # Keras's output channel c*m + j: ONNX's group c
    weight = kernel.transpose(2, 3, 0, 1).reshape(c * m, 1, kh, kw)
    return _conv(g, layer, xs[0], weight, c, layer.name)


def _dense(g, layer, xs):
    w = layer.get_weights()
    kernel, base, rank = w[0], layer.name, len(layer._in_shape)
    bias = w[1] if layer.use_bias else np.zeros(kernel.shape[1], np.float32)
    if rank == 3:                    # on the channels of an image: a 1x1 convolution
        y = g.op("Conv", [xs[0], g.const(f"{base}/kernel", kernel.T[:, :, None, None]),
                          g.const(f"{base}/bias", bias)], f"{base}/conv",
                 kernel_shape=[1, 1], pads=[0, 0, 0, 0])
    elif rank == 1:
        y = g.op("Gemm", [xs[0], g.const(f"{base}/kernel", kernel),
                          g.const(f"{base}/bias", bias)], f"{base}/gemm")
    else:
        raise NotImplementedError(f"Layer '{base}': Dense on a {layer._in_shape} tensor "
                                  "has no ONNX export")
    return _activation(g, y, layer.activation, rank, base)


def _batch_norm(g, layer, xs):
    if len(layer._in_shape) not in (1, 3):
        raise NotImplementedError(f"Layer '{layer.name}': BatchNormalization of a "
                                  f"{layer._in_shape} tensor has no ONNX export")
    gamma, beta, mean, var = layer.get_weights()
    base = layer.name
    return g.op("BatchNormalization",
                [xs[0], g.const(f"{base}/gamma", gamma), g.const(f"{base}/beta", beta),
                 g.const(f"{base}/moving_mean", mean),
                 g.const(f"{base}/moving_variance", var)],
                f"{base}/bn", epsilon=float(layer.epsilon))


def _relu(g, layer, xs):
    act = "relu" if layer.max_value is None else "relu6"
    return _activation(g, xs[0], act, len(layer._in_shape), layer.name)


def _activation_layer(g, layer, xs):
    y = _activation(g, xs[0], layer.activation, len(layer._in_shape), layer.name)
    return y if y != xs[0] else g.op("Identity", [y], layer.name)


def _zero_padding(g, layer, xs):
    (top, bottom), (left, right) = layer.padding
    pads = g.const(f"{layer.name}/pads", [0, 0, top, left, 0, 0, bottom, right], np.int64)
    return g.op("Pad", [xs[0], pads], layer.name)


def _global_pool(op_type):
    def convert(g, layer, xs):
        y = g.op(op_type, [xs[0]], f"{layer.name}/pool")          # (N, C, 1, 1)
        if layer.keepdims:
            return y                                              # Keras (1, 1, c): NCHW
        return g.op("Flatten", [y], layer.name, axis=1)
    return convert


def _identity(g, layer, xs):
    return g.op("Identity", [xs[0]], layer.name)


def _reshape(g, layer, xs):
    x, base = xs[0], layer.name
    if len(layer._in_shape) == 3:                 # Keras reshapes NHWC order
        x = g.op("Transpose", [x], f"{base}/to_nhwc", perm=_TO_NHWC)
    target = list(getattr(layer, "target_shape", (-1,)))
    y = g.op("Reshape", [x, g.const(f"{base}/shape", [0] + target, np.int64)],
             f"{base}/reshape")
    if len(layer._out_shape) == 3:
        y = g.op("Transpose", [y], base, perm=_TO_NCHW)
    return y


def _add(g, layer, xs):
    return g.op("Sum", xs, layer.name)


def _multiply(g, layer, xs):
    return g.op("Mul", xs, layer.name)


def _concatenate(g, layer, xs):
    # channels are axis 1 both in NCHW images and in (N, features) vectors
    return g.op("Concat", xs, layer.name, axis=1)


_CONVERTERS = {
    "Conv2D": _conv2d, "DepthwiseConv2D": _depthwise, "Dense": _dense,
    "BatchNormalization": _batch_norm, "ReLU": _relu, "Activation": _activation_layer,
    "ZeroPadding2D": _zero_padding,
    "GlobalAveragePooling2D": _global_pool("GlobalAveragePool"),
    "GlobalMaxPooling2D": _global_pool("GlobalMaxPool"),
    "Dropout": _identity, "Reshape": _reshape, "Flatten": _reshape, "Add": _add,
    "Multiply": _multiply, "Concatenate": _concatenate,
}


def _converter(layer):
    for klass in type(layer).__mro__:          # a user subclass exports as its base
        fn = _CONVERTERS.get(klass.__name__)
        if fn is not None and klass.__module__.startswith("aslnet."):
            return fn
    raise NotImplementedError(f"Layer '{layer.name}' ({type(layer).__name__}) has no ONNX "
                              f"export; aslnet exports {sorted(_CONVERTERS)}")


def _inbound(layer):
    """The layer's input tensors (one for a chain layer, several for a merge)."""
    ib = layer._inbound
    return list(ib) if isinstance(ib, (list, tuple)) else [ib]


def _dims(shape, names):
    return [d if d is not None else n for d, n in zip(shape, names)]


def to_onnx(model, opset_version=None):
    """The ``onnx.ModelProto`` of an aslnet model (checked with
    ``onnx.checker.check_model``)."""
    onnx, helper, numpy_helper = _onnx()
    opset = DEFAULT_OPSET if opset_version is None else int(opset_version)
    if opset < MIN_OPSET:
        raise ValueError(f"opset_version={opset_version}: aslnet writes ONNX opset "
                         f"{MIN_OPSET} or later")
    model._require_built()
    g = _Graph(helper, numpy_helper)
    inp = model._layers[0]
    in_shape = tuple(inp._out_shape)
    in_name = g.name(inp.name)
    x = g.op("Transpose", [in_name], f"{inp.name}/to_nchw", perm=_TO_NCHW) \
        if len(in_shape) == 3 else in_name
    tensors = {id(inp._output): x}
    from ..models.nesting import tensor_resolver
    flat = tensor_resolver(model)     # a nested model's tensors -> the flat graph's
    for layer in model._layers[1:]:
        try:
            xs = [tensors[id(flat(t))] for t in _inbound(layer)]
        except KeyError:
            raise NotImplementedError(f"Layer '{layer.name}': an input that is not computed "
                                      "from the model's input") from None
        tensors[id(layer._output)] = _converter(layer)(g, layer, xs)
    out_layer = model._output._layer
    y = tensors[id(flat(model._output))]
    out_shape = tuple(model._output.shape[1:])
    if len(out_shape) == 3:
        y = g.op("Transpose", [y], f"{out_layer.name}/to_nhwc", perm=_TO_NHWC)
    out_name = g.name("output_0")
    g.nodes.append(helper.make_node("Identity", [y], [out_name], name=g.name("output")))
    spatial = ["height", "width", "channels"]
    graph = helper.make_graph(
        g.nodes, model.name,
        [helper.make_tensor_value_info(in_name, onnx.TensorProto.FLOAT,
                                       ["batch"] + _dims(in_shape, spatial))],
        [helper.make_tensor_value_info(out_name, onnx.TensorProto.FLOAT,
                                       ["batch"] + _dims(out_shape, ["d1", "d2", "d3"]))],
        initializer=g.inits)
    from .. import __version__
    proto = helper.make_model(graph, producer_name="aslnet", producer_version=__version__,
                              opset_imports=[helper.make_opsetid("", opset)])
    if opset <= 17:
        proto.ir_version = 8          # what runtimes of opset 17's time read
    onnx.checker.check_model(proto, full_check=True)
    return proto
