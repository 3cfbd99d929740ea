"""TensorFlow's "Transfer learning and fine-tuning" tutorial (tensorflow.org/tutorials/
images/transfer_learning) on two classes of the digits, with tf.keras swapped for aslnet
(tf.data.AUTOTUNE is aslnet.data's; the tutorial's other tf.* calls are written with the
dataset's and NumPy's methods):
MobileNetV2 at 160x160 without its top, augmentation layers, base_model(x, training=False),
Dense(1) on logits with BinaryCrossentropy(from_logits=True); then fine-tuning from layer
100 with RMSprop and initial_epoch.

    python tf_transfer_tutorial.py DATA_DIR   (two class folders)
"""
import sys

import numpy as np

import aslnet as keras
from aslnet.data import AUTOTUNE

BATCH_SIZE = 8
IMG_SIZE = (160, 160)
keras.utils.set_random_seed(4)

train_dataset, validation_dataset = keras.utils.image_dataset_from_directory(
    sys.argv[1], validation_split=0.3, subset="both", seed=4, shuffle=True,
    batch_size=BATCH_SIZE, image_size=IMG_SIZE)
class_names = train_dataset.class_names
val_batches = int(validation_dataset.cardinality())
test_dataset = validation_dataset.take(val_batches // 2)
validation_dataset = validation_dataset.skip(val_batches // 2)
print("batches: train", int(train_dataset.cardinality()), "validation",
      int(validation_dataset.cardinality()), "test", int(test_dataset.cardinality()))

train_dataset = train_dataset.prefetch(buffer_size=AUTOTUNE)
validation_dataset = validation_dataset.prefetch(buffer_size=AUTOTUNE)
test_dataset = test_dataset.prefetch(buffer_size=AUTOTUNE)

data_augmentation = keras.Sequential([
    keras.layers.RandomFlip("horizontal"),
    keras.layers.RandomRotation(0.2),
])
preprocess_input = keras.applications.mobilenet_v2.preprocess_input

IMG_SHAPE = IMG_SIZE + (3,)
base_model = keras.applications.MobileNetV2(input_shape=IMG_SHAPE, include_top=False,
                                            weights="imagenet")
image_batch, label_batch = next(iter(train_dataset))
feature_batch = base_model(image_batch)
print("feature batch:", tuple(feature_batch.shape))
base_model.trainable = False

global_average_layer = keras.layers.GlobalAveragePooling2D()
prediction_layer = keras.layers.Dense(1)
inputs = keras.Input(shape=(160, 160, 3))
x = data_augmentation(inputs)
x = preprocess_input(x)
x = base_model(x, training=False)
x = global_average_layer(x)
x = keras.layers.Dropout(0.2)(x)
outputs = prediction_layer(x)
model = keras.Model(inputs, outputs)
print("model layers:", len(model.layers))
print("trainable variables:", len(model.trainable_variables))

base_learning_rate = 0.001
model.compile(optimizer=keras.optimizers.Adam(learning_rate=base_learning_rate),
              loss=keras.losses.BinaryCrossentropy(from_logits=True),
              metrics=[keras.metrics.BinaryAccuracy(threshold=0, name="accuracy")])
initial_epochs = 4
loss0, accuracy0 = model.evaluate(validation_dataset, verbose=0)
history = model.fit(train_dataset, epochs=initial_epochs, validation_data=validation_dataset,
                    verbose=2)

base_model.trainable = True
print("layers in the base model:", len(base_model.layers))
fine_tune_at = 100
for layer in base_model.layers[:fine_tune_at]:
    layer.trainable = False
model.compile(loss=keras.losses.BinaryCrossentropy(from_logits=True),
              optimizer=keras.optimizers.RMSprop(learning_rate=base_learning_rate / 10),
              metrics=[keras.metrics.BinaryAccuracy(threshold=0, name="accuracy")])
print("trainable variables after unfreezing:", len(model.trainable_variables))
fine_tune_epochs = 2
total_epochs = initial_epochs + fine_tune_epochs
history_fine = model.fit(train_dataset, epochs=total_epochs, initial_epoch=len(history.epoch),
                         validation_data=validation_dataset, verbose=2)
print("epochs:", history.epoch, history_fine.epoch)

loss, accuracy = model.evaluate(test_dataset, verbose=0)
image_batch, label_batch = next(iter(test_dataset))
predictions = np.asarray(model.predict_on_batch(image_batch)).flatten()
predictions = 1 / (1 + np.exp(-predictions))
predictions = np.where(predictions < 0.5, 0, 1)
print("predictions:", predictions.tolist())
print("labels:", np.asarray(label_batch).tolist())
print(f"accuracy: {accuracy:.4f}")
assert history_fine.epoch == [4, 5]
assert accuracy > 0.6, accuracy
