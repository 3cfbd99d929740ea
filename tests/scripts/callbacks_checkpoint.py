"""Training with ModelCheckpoint, EarlyStopping and ReduceLROnPlateau, then reloading the
best model from its file, with keras swapped for aslnet.

    python callbacks_checkpoint.py DATA_DIR WORK_DIR
"""
import os
import sys

import numpy as np

import aslnet as keras
from aslnet.applications.mobilenet import preprocess_input
from aslnet.callbacks import EarlyStopping, ModelCheckpoint, ReduceLROnPlateau
from aslnet.preprocessing.image import ImageDataGenerator

data_dir, work_dir = sys.argv[1], sys.argv[2]
keras.utils.set_random_seed(0)

datagen = ImageDataGenerator(preprocessing_function=preprocess_input, validation_split=0.25)
train = datagen.flow_from_directory(data_dir, target_size=(128, 128), batch_size=8,
                                    subset="training", seed=0)
val = datagen.flow_from_directory(data_dir, target_size=(128, 128), batch_size=8,
                                  subset="validation", shuffle=False)

base = keras.applications.MobileNet(input_shape=(128, 128, 3), include_top=False,
                                    weights="imagenet")
base.trainable = False
x = keras.layers.GlobalAveragePooling2D()(base.output)
x = keras.layers.Dropout(0.2)(x)
outputs = keras.layers.Dense(train.num_classes, activation="softmax")(x)
model = keras.models.Model(base.input, outputs)
model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.05),
              loss="categorical_crossentropy", metrics=["accuracy"])

best_path = os.path.join(work_dir, "best.keras")
callbacks = [
    ModelCheckpoint(best_path, monitor="val_loss", save_best_only=True, verbose=1),
    EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True, verbose=1),
    ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1, min_lr=1e-4, verbose=1),
]
history = model.fit(train, validation_data=val, epochs=30, callbacks=callbacks, verbose=2)

epochs_run = len(history.history["loss"])
best = int(np.argmin(history.history["val_loss"]))
print("epochs run:", epochs_run, "best epoch:", best + 1)
print("learning rates:", [round(float(v), 6) for v in history.history["learning_rate"]])
assert epochs_run < 30, "early stopping never stopped"
assert os.path.exists(best_path)

reloaded = keras.models.load_model(best_path)
loss_best = reloaded.evaluate(val, verbose=0)[0]
loss_restored = model.evaluate(val, verbose=0)[0]
print(f"best val_loss: {min(history.history['val_loss']):.4f} reloaded: {loss_best:.4f} "
      f"restored: {loss_restored:.4f}")
assert abs(loss_best - min(history.history["val_loss"])) < 1e-3
assert abs(loss_restored - loss_best) < 1e-3
lrs = history.history["learning_rate"]
assert lrs[-1] < lrs[0], "ReduceLROnPlateau never reduced the learning rate"
print("layers:", len(reloaded.layers))
print("params:", reloaded.count_params())
print(f"accuracy: {reloaded.evaluate(val, verbose=0)[1]:.4f}")
