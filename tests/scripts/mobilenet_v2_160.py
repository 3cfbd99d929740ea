"""MobileNetV2 at 160x160 without its top, pooled, with a new head (Keras's "transfer
learning" pattern with include_top=False, pooling='avg'), keras swapped for aslnet.

    python mobilenet_v2_160.py DATA_DIR
"""
import sys

import numpy as np

import aslnet as keras
from aslnet.applications import MobileNetV2
from aslnet.applications.mobilenet_v2 import preprocess_input

IMG_SIZE = (160, 160)
keras.utils.set_random_seed(3)
train_ds, val_ds = keras.utils.image_dataset_from_directory(
    sys.argv[1], validation_split=0.25, subset="both", seed=7, image_size=IMG_SIZE,
    batch_size=8, label_mode="categorical")
num_classes = len(train_ds.class_names)
train_ds = train_ds.map(lambda x, y: (preprocess_input(x), y))
val_ds = val_ds.map(lambda x, y: (preprocess_input(x), y))

base_model = MobileNetV2(input_shape=IMG_SIZE + (3,), include_top=False, weights="imagenet",
                         pooling="avg")
base_model.trainable = False
print("base output:", base_model.output_shape)
outputs = keras.layers.Dense(num_classes, activation="softmax", name="head")(base_model.output)
model = keras.Model(base_model.input, outputs)
model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy",
              metrics=["accuracy"])
model.fit(train_ds, validation_data=val_ds, epochs=6, verbose=2)
loss, accuracy = model.evaluate(val_ds, verbose=0)

print("layers:", len(model.layers))
print("names:", model.layers[1].name, model.layers[-2].name, model.layers[-1].name)
print("params:", model.count_params(), "trainable:",
      int(sum(np.prod(w.shape) for w in model.trainable_weights)))
print(f"accuracy: {accuracy:.4f}")
assert base_model.output_shape == (None, 1280)
assert accuracy > 0.6, accuracy
