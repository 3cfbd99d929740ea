"""Keras 3's transfer-learning pattern with image_dataset_from_directory, ported to aslnet by
replacing `keras` / `tensorflow` with `aslnet` and nothing else.

    python image_dataset_transfer.py DATA_DIR   (DATA_DIR/<class>/<images>)
"""
import sys

import aslnet as keras
from aslnet.applications import MobileNet, mobilenet
from aslnet.data import AUTOTUNE

data_dir = sys.argv[1]
keras.utils.set_random_seed(42)

train_ds, val_ds = keras.utils.image_dataset_from_directory(
    data_dir,
    validation_split=0.2,
    subset="both",
    seed=123,
    image_size=(96, 96),
    batch_size=8,
)
class_names = train_ds.class_names
print("class_names:", class_names)
print("train batches:", int(train_ds.cardinality()), "val batches:", len(val_ds))

for images, labels in train_ds.take(1):
    print("batch:", images.shape, images.dtype, labels.shape, labels.dtype,
          "pixel range:", float(images.numpy().min()), float(images.numpy().max()))


def preprocess(images, labels):
    return mobilenet.preprocess_input(images), labels


train_ds = train_ds.map(preprocess, num_parallel_calls=AUTOTUNE).cache().shuffle(100)
train_ds = train_ds.prefetch(buffer_size=AUTOTUNE)
val_ds = val_ds.map(preprocess, num_parallel_calls=AUTOTUNE).cache().prefetch(AUTOTUNE)

base_model = MobileNet(input_shape=(96, 96, 3), include_top=False, weights="imagenet",
                       pooling="avg")
base_model.trainable = False
outputs = keras.layers.Dense(len(class_names), activation="softmax")(base_model.output)
model = keras.Model(base_model.input, outputs)

model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3),
              loss="sparse_categorical_crossentropy", metrics=["accuracy"])
history = model.fit(train_ds, validation_data=val_ds, epochs=2, verbose=2)
print("history keys:", sorted(history.history))

loss, accuracy = model.evaluate(val_ds, verbose=0)
predictions = model.predict(val_ds, verbose=0)
print("predictions:", predictions.shape)
print(f"val_loss={loss:.4f}")
print(f"val_accuracy={accuracy:.4f}")
