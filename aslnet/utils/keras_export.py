"""Build the Keras (TensorFlow) twin of an aslnet model, for fidelity runs:
same architecture, same weights (copied by layer name), same trainable
flags, and -- if the aslnet model is compiled -- the same optimizer, loss
and metrics.  TensorFlow is imported only when :func:`to_keras` is called.

    from aslnet.utils.keras_export import to_keras
    kmodel = to_keras(model)          # keras.Model, ready for fit/predict

MobileNet-shaped aslnet models (``aslnet.applications.mobilenet.MobileNet``,
possibly cut and given a new head, as in the tutorial) are rebuilt with
``keras.applications.MobileNet``; the layers after its trunk, and any other
chain of aslnet layers, are converted one by one.

Known difference, handled here: Keras 3's ``MobileNet`` has no ``conv1_pad``
layer -- its ``conv1`` uses ``padding="same"`` -- whereas aslnet (like
tf.keras 2.x) pads ``((0, 1), (0, 1))`` then uses ``padding="valid"``.  Both
are the same computation when the input's height and width are even; for odd
sizes they are not (e.g. 97 -> 48 rows in aslnet/tf.keras 2, 49 in Keras 3),
so such models are converted layer by layer, keeping ``conv1_pad``.

Known difference, not handled: with a final softmax, Keras computes the
compiled categorical cross-entropy from the logits (no clipping), aslnet
from the probabilities clipped to [1e-7, 1 - 1e-7].  The gradients are the
same (p - y); the *reported* loss differs once a true-class probability is
below 1e-7 (Keras: -log p, e.g. 60; aslnet: at most 16.118).
"""
import os

__all__ = ["to_keras", "copy_weights", "keras_optimizer"]

# the MobileNet v1 trunk, as aslnet.applications.mobilenet names it
_TRUNK_FIRST = ("conv1_pad", "conv1", "conv1_bn", "conv1_relu")
_TOP_NAMES = ("reshape_1", "dropout", "conv_preds", "reshape_2", "predictions")


def _keras():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import keras  # noqa: F401  (Keras 3, installed with TensorFlow >= 2.16)
    except ImportError:  # pragma: no cover - older TensorFlow
        from tensorflow import keras
    return keras


def keras_optimizer(optimizer):
    """The Keras optimizer with the same hyper-parameters as an aslnet one."""
    keras = _keras()
    from .. import optimizers
    if isinstance(optimizer, optimizers.Adam):
        return keras.optimizers.Adam(learning_rate=optimizer.learning_rate,
                                     beta_1=optimizer.beta_1, beta_2=optimizer.beta_2,
                                     epsilon=optimizer.epsilon)
    if isinstance(optimizer, optimizers.SGD):
        return keras.optimizers.SGD(learning_rate=optimizer.learning_rate,
                                    momentum=optimizer.momentum, nesterov=optimizer.nesterov)
    raise ValueError(f"No Keras twin for optimizer {optimizer!r}")


def _convert_layer(keras, layer):
    """A new Keras layer with the configuration of an aslnet layer."""
    from .. import layers as L
    L_ = keras.layers
    t = type(layer)
    if t is L.DepthwiseConv2D:
        return L_.DepthwiseConv2D(layer.kernel_size, strides=layer.strides,
                                  padding=layer.padding,
                                  depth_multiplier=layer.depth_multiplier,
                                  activation=layer.activation, use_bias=layer.use_bias,
                                  name=layer.name)
    if t is L.Conv2D:
        return L_.Conv2D(layer.filters, layer.kernel_size, strides=layer.strides,
                         padding=layer.padding, activation=layer.activation,
                         use_bias=layer.use_bias, name=layer.name)
    if t is L.Dense:
        return L_.Dense(layer.units, activation=layer.activation, use_bias=layer.use_bias,
                        name=layer.name)
    if t is L.ZeroPadding2D:
        return L_.ZeroPadding2D(layer.padding, name=layer.name)
    if t is L.BatchNormalization:
        return L_.BatchNormalization(axis=-1, momentum=layer.momentum,
                                     epsilon=layer.epsilon, name=layer.name)
    if t is L.ReLU:
        return L_.ReLU(max_value=layer.max_value, name=layer.name)
    if t is L.Activation:
        return L_.Activation(layer.activation, name=layer.name)
    if t is L.GlobalAveragePooling2D:
        return L_.GlobalAveragePooling2D(keepdims=layer.keepdims, name=layer.name)
    if t is L.GlobalMaxPooling2D:
        return L_.GlobalMaxPooling2D(keepdims=layer.keepdims, name=layer.name)
    if t is L.Dropout:
        return L_.Dropout(layer.rate, seed=layer.seed % (2 ** 31), name=layer.name)
    if t is L.Flatten:
        return L_.Flatten(name=layer.name)
    if t is L.Reshape:
        return L_.Reshape(layer._out_shape, name=layer.name)
    raise NotImplementedError(f"to_keras: no Keras twin for layer '{layer.name}' "
                              f"({type(layer).__name__})")


def _mobilenet_trunk(model):
    """(end, kwargs) when ``model`` starts with aslnet's MobileNet trunk that
    Keras's MobileNet reproduces: ``end`` is the index of the last aslnet
    layer of that trunk in ``model.layers``; else None."""
    from .. import layers as L
    names = [l.name for l in model._layers]
    if tuple(names[1:5]) != _TRUNK_FIRST or "conv_dw_1" not in names:
        return None
    h, w, c = model.input_shape[1:]
    if h % 2 or w % 2 or c != 3:
        return None  # Keras 3's conv1 padding="same" differs (see module doc)
    conv1 = model.get_layer("conv1")
    dw1 = model.get_layer("conv_dw_1")
    if not (isinstance(conv1, L.Conv2D) and conv1.padding == "valid"
            and conv1.strides == (2, 2) and not conv1.use_bias
            and model.get_layer("conv1_pad").padding == ((0, 1), (0, 1))):
        return None
    alpha = conv1.filters / 32
    if alpha not in (0.25, 0.5, 0.75, 1.0):
        return None
    # the trunk: the longest prefix of aslnet's MobileNet layer sequence,
    # cut after a whole block (its conv_pw_<b>_relu)
    want = _trunk_names()
    n = 0
    while n + 1 < len(names) and n + 1 < len(want) and names[n + 1] == want[n + 1]:
        n += 1
    while n > 0 and not (names[n].startswith("conv_pw_") and names[n].endswith("_relu")):
        n -= 1
    if n == 0:
        return None
    for layer in model._layers[1:n + 1]:  # Keras's MobileNet uses the defaults
        if isinstance(layer, L.BatchNormalization) and (layer.momentum, layer.epsilon) != \
                (0.99, 1e-3) or isinstance(layer, L.ReLU) and layer.max_value != 6.0:
            return None
    return n, dict(alpha=alpha, depth_multiplier=dw1.depth_multiplier,
                   input_shape=(h, w, c))


def _trunk_names():
    """[input, conv1_pad, conv1, ..., conv_pw_13_relu]: aslnet's MobileNet trunk."""
    from ..applications.mobilenet import _BLOCKS
    names = ["<input>"] + list(_TRUNK_FIRST)
    for b, (_, stride) in enumerate(_BLOCKS, start=1):
        if stride != 1:
            names.append(f"conv_pad_{b}")
        names += [f"conv_dw_{b}", f"conv_dw_{b}_bn", f"conv_dw_{b}_relu",
                  f"conv_pw_{b}", f"conv_pw_{b}_bn", f"conv_pw_{b}_relu"]
    return names


def _keras_layers_by_name(kmodel):
    out = {}
    for layer in kmodel.layers:
        out[layer.name] = layer
        if hasattr(layer, "layers"):  # nested model (not built here, but be safe)
            out.update(_keras_layers_by_name(layer))
    return out


def copy_weights(model, kmodel, trainable=True):
    """Copy every aslnet layer's weights (and, with ``trainable``, its
    trainable flag) into the Keras layer of the same name.  Raises
    ValueError if an aslnet layer with weights has no Keras twin of that
    name, or if the weight shapes differ."""
    klayers = _keras_layers_by_name(kmodel)
    missing = []
    for layer in model._layers[1:]:
        k = klayers.get(layer.name)
        if k is None:
            if layer.weights:
                missing.append(layer.name)
            continue
        if layer.weights:
            weights = layer.get_weights()
            if [tuple(w.shape) for w in k.get_weights()] != [w.shape for w in weights]:
                raise ValueError(f"to_keras: layer '{layer.name}' weight shapes differ: "
                                 f"aslnet {[w.shape for w in weights]}, Keras "
                                 f"{[tuple(w.shape) for w in k.get_weights()]}")
            k.set_weights(weights)
        if trainable:
            k.trainable = layer.trainable
    if missing:
        raise ValueError(f"to_keras: no Keras layer for aslnet layers {missing}")


def to_keras(model, compile="auto"):
    """The Keras twin of aslnet ``model`` (a ``keras.Model``).

    Weights and trainable flags are copied by layer name.  ``compile``:
    'auto' compiles the Keras model with the aslnet model's optimizer
    (same hyper-parameters, fresh state), loss and metrics when the aslnet
    model is compiled; True requires it to be; False leaves it uncompiled.
    """
    keras = _keras()
    from .. import layers as L
    layers = model._layers
    inp = layers[0]
    trunk = _mobilenet_trunk(model)
    if trunk is not None:
        end, kw = trunk
        rest = layers[end + 1:]
        x_in = keras.Input(shape=kw["input_shape"], name=inp.name)
        top = [l.name for l in rest]
        if end == len(layers) - 1 - 6 and top[1:] == list(_TOP_NAMES) and \
                type(rest[0]) is L.GlobalAveragePooling2D and \
                layers[end].name == "conv_pw_13_relu":
            # exactly aslnet's include_top=True MobileNet
            kmodel = keras.applications.MobileNet(
                input_tensor=x_in, weights=None, include_top=True,
                classes=model.get_layer("conv_preds").filters,
                dropout=model.get_layer("dropout").rate,
                classifier_activation=model.get_layer("predictions").activation, **kw)
            # Keras 3 pools with keepdims=True and has no reshape_1
            gap = next(l for l in kmodel.layers
                       if isinstance(l, keras.layers.GlobalAveragePooling2D))
            gap.trainable = rest[0].trainable
        else:
            base = keras.applications.MobileNet(input_tensor=x_in, weights=None,
                                                include_top=False, **kw)
            x = base.get_layer(layers[end].name).output
            for layer in rest:
                x = _convert_layer(keras, layer)(x)
            kmodel = keras.Model(x_in, x, name=model.name)
    else:
        x_in = keras.Input(shape=inp._in_shape, name=inp.name)
        x = x_in
        for layer in layers[1:]:
            x = _convert_layer(keras, layer)(x)
        kmodel = keras.Model(x_in, x, name=model.name)
    copy_weights(model, kmodel, trainable=True)

    if compile is True and model.optimizer is None:
        raise ValueError("to_keras(compile=True): the aslnet model is not compiled")
    if compile and model.optimizer is not None:
        metrics = ["accuracy" if m in ("acc", "accuracy") else m
                   for m in getattr(model, "compiled_metrics", None) or []]
        kmodel.compile(optimizer=keras_optimizer(model.optimizer), loss=model.loss,
                       metrics=metrics or None)
    return kmodel

