"""Keras preprocessing layers in front of a pretrained base (RandomFlip, RandomRotation,
RandomZoom, Rescaling), the base built on them with input_tensor=, as Keras's
"image classification from scratch" / transfer-learning guides do; keras swapped for aslnet.

    python augmentation_layers.py DATA_DIR
"""
import sys

import numpy as np

import aslnet as keras
from aslnet import layers

keras.utils.set_random_seed(11)
train_ds, val_ds = keras.utils.image_dataset_from_directory(
    sys.argv[1], validation_split=0.25, subset="both", seed=11, image_size=(112, 112),
    batch_size=8)

inputs = keras.Input(shape=(112, 112, 3))
x = layers.RandomFlip("horizontal", seed=1)(inputs)
x = layers.RandomRotation(0.05, seed=2)(x)
x = layers.RandomZoom(0.1, seed=3)(x)
x = layers.Rescaling(1.0 / 127.5, offset=-1)(x)          # MobileNet's preprocess_input
base = keras.applications.MobileNet(input_tensor=x, include_top=False, weights="imagenet",
                                    pooling="avg")
base.trainable = False
outputs = layers.Dense(3, activation="softmax")(base.output)
model = keras.Model(inputs, outputs)
model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
history = model.fit(train_ds, validation_data=val_ds, epochs=6, verbose=2)

batch = next(iter(val_ds))[0]
first, second = model.predict(batch, verbose=0), model.predict(batch, verbose=0)
print("inference repeatable:", bool(np.array_equal(first, second)))
print("layers:", len(model.layers))
print("names:", [l.name for l in model.layers[1:5]])
print("params:", model.count_params())
loss, accuracy = model.evaluate(val_ds, verbose=0)
print(f"accuracy: {accuracy:.4f}")
assert np.array_equal(first, second)         # augmentation is off outside training
assert accuracy > 0.6, accuracy
