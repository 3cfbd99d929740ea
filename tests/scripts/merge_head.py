"""A small head with Multiply (a sigmoid gate over the pooled features, squeeze-and-excite
style) and Concatenate (the gated features next to a hidden layer's), on a frozen
MobileNet; keras swapped for aslnet.

    python merge_head.py DATA_DIR
"""
import sys

import numpy as np

import aslnet as keras
from aslnet.applications.mobilenet import MobileNet, preprocess_input
from aslnet.layers import Concatenate, Dense, Dropout, Multiply

keras.utils.set_random_seed(2)
ds = keras.utils.image_dataset_from_directory(sys.argv[1], image_size=(128, 128),
                                              batch_size=10, label_mode="categorical",
                                              seed=2)
class_names = ds.class_names
ds = ds.map(lambda x, y: (preprocess_input(x), y))

base = MobileNet(input_shape=(128, 128, 3), include_top=False, weights="imagenet",
                 pooling="avg")
base.trainable = False
features = base.output
gate = Dense(1024, activation="sigmoid", name="gate")(features)
gated = Multiply(name="gated")([features, gate])
hidden = Dense(64, activation="relu", name="hidden")(gated)
joined = Concatenate(name="joined")([gated, hidden])
joined = Dropout(0.2)(joined)
outputs = Dense(len(class_names), activation="softmax", name="predictions")(joined)
model = keras.Model(base.input, outputs)
model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
model.fit(ds, epochs=5, verbose=2)

print("shapes:", model.get_layer("gated").output.shape, model.get_layer("joined").output.shape)
print("layers:", len(model.layers))
print("names:", [l.name for l in model.layers[-6:]])
print("params:", model.count_params(), "trainable:",
      int(sum(np.prod(w.shape) for w in model.trainable_weights)))
loss, accuracy = model.evaluate(ds, verbose=0)
print(f"accuracy: {accuracy:.4f}")
assert tuple(model.get_layer("joined").output.shape) == (None, 1024 + 64)
assert accuracy > 0.7, accuracy
