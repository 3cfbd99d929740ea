"""Small valid files for the fuzz targets (tools/fuzz/fuzz_*.py) to start from,
made here rather than stored: a Keras .h5 model and weights file saved by
aslnet, TensorFlow Lite files in the layout of the shared MobileNet v1 weights
(with one channel per layer, a few hundred bytes), and images in the formats
Pillow reads most often."""
import importlib
import io
import os

import numpy as np

# -- TensorFlow Lite -----------------------------------------------------------------


def _tflite(ops, n_in=3, size=8):
    """A TFLite flatbuffer: ``ops`` = [(opcode, options, kernel uint8 OHWI or None,
    bias int32 or None, out_channels)], one chain from an input tensor."""
    import flatbuffers
    import tflite
    # the generated modules (the package's attributes of these names are the classes)
    (Buffer, Conv2DOptions, DepthwiseConv2DOptions, Model, Operator, OperatorCode,
     Pool2DOptions, QuantizationParameters, SubGraph, Tensor) = (
        importlib.import_module(f"tflite.{name}") for name in (
            "Buffer", "Conv2DOptions", "DepthwiseConv2DOptions", "Model", "Operator",
            "OperatorCode", "Pool2DOptions", "QuantizationParameters", "SubGraph", "Tensor"))

    b = flatbuffers.Builder(1024)
    codes = sorted({op[0] for op in ops})
    buffers = [b""]                 # buffer 0: empty, by convention
    tensors = []                    # (name, shape, type, buffer index, scale)

    def tensor(name, shape, ttype, data=None, scale=None):
        buf = 0
        if data is not None:
            buffers.append(data.tobytes())
            buf = len(buffers) - 1
        tensors.append((name, shape, ttype, buf, scale))
        return len(tensors) - 1

    U8, I32 = tflite.TensorType.UINT8, tflite.TensorType.INT32
    x = tensor("input", (1, size, size, n_in), U8, scale=0.0078125)
    op_defs = []
    for i, (opcode, options, kernel, bias, out_c) in enumerate(ops):
        inputs = [x]
        if kernel is not None:
            inputs.append(tensor(f"op{i}/weights", kernel.shape, U8, kernel, 0.02))
            inputs.append(tensor(f"op{i}/bias", bias.shape, I32, bias, 0.02 * 0.0078125))
        x = tensor(f"op{i}/out", (1, size, size, out_c), U8, scale=0.0235)
        op_defs.append((codes.index(opcode), opcode, options, inputs, [x]))

    def vec(start, items):
        start(b, len(items))
        for item in reversed(items):
            b.PrependUOffsetTRelative(item)
        return b.EndVector()

    buf_offs = []
    for data in buffers:
        d = b.CreateNumpyVector(np.frombuffer(data, np.uint8)) if data else None
        Buffer.BufferStart(b)
        if d is not None:
            Buffer.BufferAddData(b, d)
        buf_offs.append(Buffer.BufferEnd(b))
    tensor_offs = []
    for name, shape, ttype, buf, scale in tensors:
        n = b.CreateString(name)
        s = b.CreateNumpyVector(np.array(shape, np.int32))
        q = None
        if scale is not None:
            sc = b.CreateNumpyVector(np.array([scale], np.float32))
            zp = b.CreateNumpyVector(np.array([128 if ttype == U8 else 0], np.int64))
            QuantizationParameters.QuantizationParametersStart(b)
            QuantizationParameters.QuantizationParametersAddScale(b, sc)
            QuantizationParameters.QuantizationParametersAddZeroPoint(b, zp)
            q = QuantizationParameters.QuantizationParametersEnd(b)
        Tensor.TensorStart(b)
        Tensor.TensorAddName(b, n)
        Tensor.TensorAddShape(b, s)
        Tensor.TensorAddType(b, ttype)
        Tensor.TensorAddBuffer(b, buf)
        if q is not None:
            Tensor.TensorAddQuantization(b, q)
        tensor_offs.append(Tensor.TensorEnd(b))
    op_offs = []
    for code_index, opcode, options, inputs, outputs in op_defs:
        ins = b.CreateNumpyVector(np.array(inputs, np.int32))
        outs = b.CreateNumpyVector(np.array(outputs, np.int32))
        kind, opts = None, None
        if opcode == tflite.BuiltinOperator.CONV_2D:
            kind, mod, prefix = tflite.BuiltinOptions.Conv2DOptions, Conv2DOptions, "Conv2DOptions"
        elif opcode == tflite.BuiltinOperator.DEPTHWISE_CONV_2D:
            kind, mod, prefix = (tflite.BuiltinOptions.DepthwiseConv2DOptions,
                                 DepthwiseConv2DOptions, "DepthwiseConv2DOptions")
        else:
            kind, mod, prefix = tflite.BuiltinOptions.Pool2DOptions, Pool2DOptions, "Pool2DOptions"
        if options is not None:
            getattr(mod, prefix + "Start")(b)
            for key, value in options.items():
                getattr(mod, prefix + "Add" + key)(b, value)
            opts = getattr(mod, prefix + "End")(b)
        Operator.OperatorStart(b)
        Operator.OperatorAddOpcodeIndex(b, code_index)
        Operator.OperatorAddInputs(b, ins)
        Operator.OperatorAddOutputs(b, outs)
        if opts is not None:
            Operator.OperatorAddBuiltinOptionsType(b, kind)
            Operator.OperatorAddBuiltinOptions(b, opts)
        op_offs.append(Operator.OperatorEnd(b))
    t_vec = vec(SubGraph.SubGraphStartTensorsVector, tensor_offs)
    o_vec = vec(SubGraph.SubGraphStartOperatorsVector, op_offs)
    g_in = b.CreateNumpyVector(np.array([0], np.int32))
    g_out = b.CreateNumpyVector(np.array([len(tensors) - 1], np.int32))
    SubGraph.SubGraphStart(b)
    SubGraph.SubGraphAddTensors(b, t_vec)
    SubGraph.SubGraphAddOperators(b, o_vec)
    SubGraph.SubGraphAddInputs(b, g_in)
    SubGraph.SubGraphAddOutputs(b, g_out)
    graph = SubGraph.SubGraphEnd(b)
    code_offs = []
    for code in codes:
        OperatorCode.OperatorCodeStart(b)
        OperatorCode.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
        OperatorCode.OperatorCodeAddBuiltinCode(b, code)
        OperatorCode.OperatorCodeAddVersion(b, 1)
        code_offs.append(OperatorCode.OperatorCodeEnd(b))
    c_vec = vec(Model.ModelStartOperatorCodesVector, code_offs)
    g_vec = vec(Model.ModelStartSubgraphsVector, [graph])
    b_vec = vec(Model.ModelStartBuffersVector, buf_offs)
    desc = b.CreateString("aslnet fuzz seed")
    Model.ModelStart(b)
    Model.ModelAddVersion(b, 3)
    Model.ModelAddOperatorCodes(b, c_vec)
    Model.ModelAddSubgraphs(b, g_vec)
    Model.ModelAddDescription(b, desc)
    Model.ModelAddBuffers(b, b_vec)
    b.Finish(Model.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _conv_options(stride, activation):
    return {"Padding": 0, "StrideH": stride, "StrideW": stride,  # Padding 0: SAME
            "FusedActivationFunction": activation,
            "DilationHFactor": 1, "DilationWFactor": 1}


def tiny_mobilenet_v1_tflite(without_options=()):
    """The embedding extractor's layout (conv1, 13 depthwise-separable blocks, average
    pool) with one channel per layer: what ``pretrained.mobilenet_v1_weights`` accepts.
    ``without_options``: indices of operators written without their options table."""
    import tflite
    from aslnet.pretrained import BLOCK_STRIDES
    relu6 = tflite.ActivationFunctionType.RELU6
    rng = np.random.default_rng(0)
    k = lambda *shape: rng.integers(0, 256, shape, dtype=np.uint8)  # noqa: E731
    bias = lambda: rng.integers(-500, 500, (1,), dtype=np.int32)   # noqa: E731
    ops = [(tflite.BuiltinOperator.CONV_2D, _conv_options(2, relu6), k(1, 3, 3, 3), bias(), 1)]
    for stride in BLOCK_STRIDES:
        dw = dict(_conv_options(stride, relu6), DepthMultiplier=1)
        ops.append((tflite.BuiltinOperator.DEPTHWISE_CONV_2D, dw, k(1, 3, 3, 1), bias(), 1))
        ops.append((tflite.BuiltinOperator.CONV_2D, _conv_options(1, relu6), k(1, 1, 1, 1),
                    bias(), 1))
    pool = {"Padding": 1, "StrideH": 1, "StrideW": 1, "FilterHeight": 2, "FilterWidth": 2,
            "FusedActivationFunction": tflite.ActivationFunctionType.NONE}
    ops.append((tflite.BuiltinOperator.AVERAGE_POOL_2D, pool, None, None, 1))
    ops = [(op[0], None, *op[2:]) if i in without_options else op for i, op in enumerate(ops)]
    return _tflite(ops)


def tiny_head_tflite(classes=4):
    """The classifier's layout: one 1x1 convolution with bias, no activation."""
    import tflite
    rng = np.random.default_rng(1)
    ops = [(tflite.BuiltinOperator.CONV_2D, _conv_options(1, tflite.ActivationFunctionType.NONE),
            rng.integers(0, 256, (classes, 1, 1, 1), dtype=np.uint8),
            rng.integers(-500, 500, (classes,), dtype=np.int32), classes)]
    return _tflite(ops, n_in=1)


# -- Keras .h5 -------------------------------------------------------------------------

def tiny_model():
    """A small model with every weighted layer kind the .h5 format carries."""
    import aslnet
    from aslnet import layers as L
    aslnet.set_random_seed(0)
    inp = L.Input((6, 6, 2), name="input")
    x = L.ZeroPadding2D(((1, 0), (0, 1)), name="pad")(inp)
    x = L.Conv2D(3, 3, strides=2, name="conv")(x)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU(6.0, name="relu")(x)
    x = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dropout(0.1, name="drop")(x)
    out = L.Dense(2, activation="softmax", name="head")(x)
    return aslnet.Model(inp, out)


def h5_files(folder):
    """(model file, weights-only file) saved by aslnet into ``folder``."""
    import aslnet
    model = tiny_model()
    model.compile(optimizer=aslnet.optimizers.Adam(1e-3), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    x = np.random.default_rng(0).normal(size=(4, 6, 6, 2)).astype(np.float32)
    model.train_on_batch(x, np.eye(2, dtype=np.float32)[[0, 1, 0, 1]])  # optimizer state too
    full = os.path.join(folder, "model.h5")
    weights = os.path.join(folder, "weights.h5")
    model.save(full)
    model.save_weights(weights)
    return full, weights


# -- images ----------------------------------------------------------------------------

def images():
    """name -> bytes of small images: the formats and modes Pillow reads most often."""
    from PIL import Image
    rng = np.random.default_rng(2)
    rgb = Image.fromarray(rng.integers(0, 256, (7, 5, 3), dtype=np.uint8), "RGB")
    gray16 = Image.fromarray(rng.integers(0, 65536, (6, 4), dtype=np.uint16))   # I;16
    out = {}
    for name, img, fmt, kw in [("rgb.png", rgb, "PNG", {}), ("rgb.jpg", rgb, "JPEG", {}),
                               ("rgb.bmp", rgb, "BMP", {}), ("rgb.gif", rgb, "GIF", {}),
                               ("rgba.png", rgb.convert("RGBA"), "PNG", {}),
                               ("palette.png", rgb.convert("P"), "PNG", {}),
                               ("gray.tiff", rgb.convert("L"), "TIFF", {}),
                               ("gray16.png", gray16, "PNG", {}),
                               ("rgb.webp", rgb, "WEBP", {}),
                               ("progressive.jpg", rgb, "JPEG", {"progressive": True})]:
        buf = io.BytesIO()
        try:
            img.save(buf, fmt, **kw)
        except (OSError, KeyError):     # a Pillow built without this codec
            continue
        out[name] = buf.getvalue()
    return out


def write_corpus(folder, files):
    """Write name -> bytes into ``folder`` (created) and return it."""
    os.makedirs(folder, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
    return folder
