"""deeplizard's "fine-tune MobileNet on sign-language digits" (Keras course), with
tensorflow.keras swapped for aslnet.

    python deeplizard_sign_digits.py SPLIT_DIR   (SPLIT_DIR/{train,valid,test}/<digit>/*.jpg)
"""
import os
import sys

import numpy as np

from aslnet.applications import mobilenet
from aslnet.layers import Dense
from aslnet.metrics import categorical_crossentropy  # noqa: F401  (imported, never used)
from aslnet.models import Model
from aslnet.optimizers import Adam
from aslnet.preprocessing.image import ImageDataGenerator

train_path, valid_path, test_path = (os.path.join(sys.argv[1], d)
                                     for d in ("train", "valid", "test"))

train_batches = ImageDataGenerator(preprocessing_function=mobilenet.preprocess_input) \
    .flow_from_directory(directory=train_path, target_size=(224, 224), batch_size=10)
valid_batches = ImageDataGenerator(preprocessing_function=mobilenet.preprocess_input) \
    .flow_from_directory(directory=valid_path, target_size=(224, 224), batch_size=10)
test_batches = ImageDataGenerator(preprocessing_function=mobilenet.preprocess_input) \
    .flow_from_directory(directory=test_path, target_size=(224, 224), batch_size=10,
                         shuffle=False)

mobile = mobilenet.MobileNet()
x = mobile.layers[-6].output
output = Dense(units=10, activation='softmax')(x)
model = Model(inputs=mobile.input, outputs=output)
for layer in model.layers[:-23]:
    layer.trainable = False
model.summary()

model.compile(optimizer=Adam(learning_rate=0.0001), loss='categorical_crossentropy',
              metrics=['accuracy'])
history = model.fit(x=train_batches, validation_data=valid_batches, epochs=15, verbose=2)

predictions = model.predict(x=test_batches, verbose=0)
y_pred = np.argmax(predictions, axis=-1)
cm = np.zeros((10, 10), dtype=int)
for t, p in zip(test_batches.classes, y_pred):
    cm[t, p] += 1
print(cm)
accuracy = float(np.trace(cm)) / cm.sum()

trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
print("layers:", len(model.layers))
print("names:", model.layers[-6].name, model.layers[-2].name, model.layers[-1].name)
print("params:", model.count_params(), "trainable:", trainable)
print("predictions:", predictions.shape)
print("history:", sorted(history.history))
print(f"accuracy: {accuracy:.4f}")
assert predictions.shape == (len(test_batches.classes), 10)
assert np.allclose(predictions.sum(axis=1), 1, atol=1e-5)
# 80 training images: the 23 trainable layers' batch-norm moving statistics see 120
# updates at momentum 0.99 (70% renewed), so the held-out accuracy of 30 images is noise
# (0.3..0.9 across CPUs); that the model learned shows in its training history.
acc, loss = history.history["accuracy"], history.history["loss"]
assert acc[-1] >= 0.9, acc
assert loss[-1] < loss[0] / 3, loss
