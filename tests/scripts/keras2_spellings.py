"""A tf.keras 2 era script: `lr=`, fit_generator / evaluate_generator / predict_generator
with steps from len(), keras.utils.to_categorical, keras swapped for aslnet.

    python keras2_spellings.py DATA_DIR
"""
import sys

import numpy as np

import aslnet as keras
from aslnet.applications.mobilenet import MobileNet, preprocess_input
from aslnet.layers import Dense
from aslnet.models import Model
from aslnet.optimizers import Adam
from aslnet.preprocessing.image import ImageDataGenerator

datagen = ImageDataGenerator(preprocessing_function=preprocess_input)
train_gen = datagen.flow_from_directory(sys.argv[1], target_size=(96, 96), batch_size=10)
test_gen = datagen.flow_from_directory(sys.argv[1], target_size=(96, 96), batch_size=10,
                                       shuffle=False)

base = MobileNet(input_shape=(96, 96, 3), include_top=False, weights="imagenet",
                 pooling="avg")
for layer in base.layers:
    layer.trainable = False
x = Dense(32, activation="relu")(base.output)
model = Model(inputs=base.input, outputs=Dense(train_gen.num_classes,
                                               activation="softmax")(x))
model.compile(optimizer=Adam(lr=1e-3), loss="categorical_crossentropy",
              metrics=["accuracy"])
print("lr:", float(model.optimizer.learning_rate))

history = model.fit_generator(train_gen, steps_per_epoch=len(train_gen), epochs=6,
                              verbose=2)
loss, accuracy = model.evaluate_generator(test_gen, steps=len(test_gen))
probs = model.predict_generator(test_gen, steps=len(test_gen))
onehot = keras.utils.to_categorical(test_gen.classes, num_classes=train_gen.num_classes)
print("predictions:", probs.shape, "labels:", onehot.shape)
print(f"accuracy: {accuracy:.4f}")
assert probs.shape == onehot.shape
assert abs(float(np.mean(probs.argmax(1) == test_gen.classes)) - accuracy) < 1e-6
assert accuracy > 0.7, accuracy
