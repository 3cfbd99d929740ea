"""Cats-vs-dogs style binary classifier: flow_from_directory(class_mode='binary'), a
Dense(1, activation='sigmoid') head and binary_crossentropy, keras swapped for aslnet.

    python binary_sigmoid.py DATA_DIR   (two class folders)
"""
import sys

import numpy as np

from aslnet.applications.mobilenet import MobileNet, preprocess_input
from aslnet.layers import Dense, Dropout, GlobalAveragePooling2D
from aslnet.metrics import BinaryAccuracy
from aslnet.models import Model
from aslnet.optimizers import RMSprop
from aslnet.preprocessing.image import ImageDataGenerator

gen = ImageDataGenerator(preprocessing_function=preprocess_input, validation_split=0.25,
                         horizontal_flip=True)
train_generator = gen.flow_from_directory(sys.argv[1], target_size=(128, 128), batch_size=8,
                                          class_mode="binary", subset="training", seed=1)
validation_generator = ImageDataGenerator(preprocessing_function=preprocess_input,
                                          validation_split=0.25).flow_from_directory(
    sys.argv[1], target_size=(128, 128), batch_size=8, class_mode="binary",
    subset="validation", shuffle=False)
print("class_indices:", train_generator.class_indices)

base_model = MobileNet(weights="imagenet", include_top=False, input_shape=(128, 128, 3))
for layer in base_model.layers:
    layer.trainable = False
x = GlobalAveragePooling2D()(base_model.output)
x = Dropout(0.3)(x)
predictions = Dense(1, activation="sigmoid")(x)
model = Model(inputs=base_model.input, outputs=predictions)
model.compile(optimizer=RMSprop(learning_rate=1e-3), loss="binary_crossentropy",
              metrics=[BinaryAccuracy(threshold=0.5, name="accuracy")])
history = model.fit(train_generator, epochs=5, validation_data=validation_generator,
                    verbose=2)

probs = model.predict(validation_generator, verbose=0)
labels = (probs[:, 0] > 0.5).astype(int)
accuracy = float(np.mean(labels == validation_generator.classes))
print("predictions:", probs.shape)
print("layers:", len(model.layers))
print("params:", model.count_params())
print(f"accuracy: {accuracy:.4f}")
assert probs.shape == (len(validation_generator.classes), 1)
assert ((probs >= 0) & (probs <= 1)).all()
# fit's BinaryAccuracy on the validation data agrees with the predictions (same model,
# dropout off, same order); the head learned (loss falls) and is well above chance (0.5)
# on the 12 validation images: >= 8 right (a single run of 5 RMSprop epochs on 36 images
# has ended at 9/12 to 12/12 across CPUs, so 9 is no bound)
assert abs(accuracy - history.history["val_accuracy"][-1]) < 1e-6, history.history
assert history.history["loss"][-1] < history.history["loss"][0], history.history["loss"]
assert accuracy >= 2 / 3, accuracy
