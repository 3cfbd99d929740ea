"""A pretrained base inside a Sequential, the shortest transfer-learning script:
Sequential([base, GlobalAveragePooling2D(), Dense(n)]), keras swapped for aslnet.

    python sequential_base.py DATA_DIR
"""
import sys

import numpy as np

import aslnet as keras
from aslnet.applications.mobilenet import MobileNet, preprocess_input
from aslnet.layers import Dense, GlobalAveragePooling2D
from aslnet.models import Sequential

keras.utils.set_random_seed(6)
train_ds = keras.utils.image_dataset_from_directory(sys.argv[1], image_size=(128, 128),
                                                    batch_size=10, label_mode="categorical",
                                                    seed=6)
num_classes = len(train_ds.class_names)
train_ds = train_ds.map(lambda x, y: (preprocess_input(x), y))

base = MobileNet(input_shape=(128, 128, 3), include_top=False, weights="imagenet")
base.trainable = False
model = Sequential([base, GlobalAveragePooling2D(), Dense(num_classes, activation="softmax")])
model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy",
              metrics=["accuracy"])
model.summary()
model.fit(train_ds, epochs=5, verbose=2)

print("layers:", len(model.layers))
print("names:", [type(l).__name__ for l in model.layers][1:])
print("output:", model.output_shape)
print("params:", model.count_params(), "trainable:",
      int(sum(np.prod(w.shape) for w in model.trainable_weights)))
loss, accuracy = model.evaluate(train_ds, verbose=0)
print(f"accuracy: {accuracy:.4f}")
assert len(model.layers) == 3
assert accuracy > 0.7, accuracy
