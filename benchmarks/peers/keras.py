"""Keras 3 on TensorFlow (CPU): ``keras.applications.MobileNet`` or ``MobileNetV2``
(``--arch``) with ``weights=None`` at ``--size``, given aslnet's weights by layer
name.  ``--export`` writes the float32 TFLite model for LiteRT.

    python -m benchmarks.peers.keras {inference,train,fit} --work DIR [--arch A --size S]

Keras 3 has no ``ImageDataGenerator``: ``fit`` reads the split with
``keras.utils.image_dataset_from_directory`` (nearest-neighbour resize to
--size, batch 10, shuffled each epoch, one-hot labels) mapped through
the arch's ``preprocess_input`` -- the tutorial's pipeline.
"""
import os
import sys
import time

import numpy as np
import tensorflow as tf
import keras

from benchmarks import common

TASKS = ("inference", "train", "fit")
NAME, POLICY = "keras", "float32"   # benchmarks.peers.keras_bf16 changes both


def _set_weights(model, weights):
    layers = {l.name: l for l in model.layers}
    for name, arrays in weights.items():
        if name in layers:
            layers[name].set_weights(arrays)
        elif name != "conv1_pad":
            raise KeyError(f"no Keras layer {name!r}")


def _app(args):
    return {"mobilenet": keras.applications.MobileNet,
            "mobilenet_v2": keras.applications.MobileNetV2}[args.arch]


def _preprocess(args):
    return {"mobilenet": keras.applications.mobilenet,
            "mobilenet_v2": keras.applications.mobilenet_v2}[args.arch].preprocess_input


def imagenet_model(args):
    model = _app(args)(input_shape=(args.size, args.size, 3), weights=None)
    _set_weights(model, common.load_weights(args.work, "imagenet"))
    return model


def tutorial_model(args):
    """MobileNet cut at its global average pooling + Dense(10, softmax); the
    layers that aslnet's ``load_pretrained`` leaves trainable (by name) are
    trainable; Adam 1e-4, categorical cross-entropy, accuracy."""
    work = args.work
    meta = common.tutorial_meta(work)
    base = _app(args)(input_shape=(args.size, args.size, 3), weights=None,
                      include_top=False, pooling="avg")
    out = keras.layers.Dense(meta["classes"], activation="softmax", name=meta["head"])(
        base.output)
    model = keras.Model(base.input, out)
    _set_weights(model, common.load_weights(work, "tutorial"))
    trainable = set(meta["trainable"])
    for layer in model.layers:
        layer.trainable = layer.name in trainable
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-4),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def inference(args):
    model = imagenet_model(args)
    x = common.inputs(args.work)
    res = common.batch_throughputs(args, model.predict_on_batch, x)
    np.save(os.path.join(args.work, f"{NAME}-outputs.npy"),
            np.asarray(model.predict_on_batch(x), np.float32))
    if args.export:
        converter = tf.lite.TFLiteConverter.from_keras_model(model)   # float32, no quantization
        with open(os.path.join(args.work, "mobilenet.tflite"), "wb") as f:
            f.write(converter.convert())
    common.write_result(args, NAME, res)


def train(args):
    common.keras_train_step(args, NAME, tutorial_model(args))


def fit(args):
    t0 = time.perf_counter()
    pre = _preprocess(args)

    def flow(sub, shuffle):
        ds = keras.utils.image_dataset_from_directory(
            os.path.join(args.split, sub), label_mode="categorical",
            image_size=(args.size, args.size),
            interpolation="nearest", batch_size=10, shuffle=shuffle, seed=0)
        return ds.map(lambda x, y: (pre(tf.cast(x, tf.float32)), y))

    train_b, valid_b, test_b = flow("train", True), flow("valid", True), flow("test", False)
    model = tutorial_model(args)
    t1 = time.perf_counter()
    hist = model.fit(train_b, validation_data=valid_b, epochs=args.epochs, verbose=2)
    t2 = time.perf_counter()
    y_true = np.concatenate([y.numpy().argmax(1) for _, y in test_b])
    pred = model.predict(test_b, verbose=0).argmax(1)
    common.write_result(args, NAME, {
        "setup_s": t1 - t0, "fit_s": t2 - t1, "test_s": time.perf_counter() - t2,
        "test_accuracy": float(np.mean(pred == y_true)), "test_images": len(pred),
        "epochs": args.epochs,
        "history": {k: [float(v) for v in vs] for k, vs in hist.history.items()}})


def main():
    args = common.peer_args(TASKS)
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy(POLICY)
    globals()[args.task](args)


if __name__ == "__main__":
    sys.exit(main())
