"""SGD with momentum and an ExponentialDecay learning-rate schedule, on pooled features
of a frozen MobileNet (keras.io's schedule example on a transfer head), keras swapped for
aslnet.

    python sgd_schedule.py DATA_DIR
"""
import sys

import numpy as np

import aslnet as keras
from aslnet import layers
from aslnet.applications.mobilenet import preprocess_input

keras.utils.set_random_seed(5)
ds = keras.utils.image_dataset_from_directory(sys.argv[1], image_size=(128, 128),
                                              batch_size=6, shuffle=True, seed=5)
ds = ds.map(lambda x, y: (preprocess_input(x), y))

lr_schedule = keras.optimizers.schedules.ExponentialDecay(
    initial_learning_rate=0.01, decay_steps=10, decay_rate=0.5, staircase=True)
optimizer = keras.optimizers.SGD(learning_rate=lr_schedule, momentum=0.9, nesterov=True)

inputs = keras.Input(shape=(128, 128, 3))
base = keras.applications.MobileNet(include_top=False, weights="imagenet",
                                    input_tensor=inputs, pooling="avg")
base.trainable = False
outputs = layers.Dense(3, activation="softmax")(base.output)
model = keras.Model(inputs, outputs)
model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
history = model.fit(ds, epochs=4, verbose=2)

steps = int(optimizer.iterations.numpy())
lr_now = float(lr_schedule(steps))
print("steps:", steps)
print(f"learning rate now: {lr_now:.6f}")
print("layers:", len(model.layers))
print("params:", model.count_params())
loss, accuracy = model.evaluate(ds, verbose=0)
print(f"accuracy: {accuracy:.4f}")
assert steps == 4 * 10
assert abs(lr_now - 0.01 * 0.5 ** (steps // 10)) < 1e-9
assert history.history["loss"][-1] < history.history["loss"][0]
assert accuracy > 0.7, accuracy
