"""Integer labels with sparse_categorical_crossentropy: images loaded by hand into NumPy
arrays (load_img / img_to_array), a pooled MobileNet base and a softmax head.

    python sparse_labels.py DATA_DIR   (DATA_DIR/<class>/<images>)
"""
import os
import sys

import numpy as np

import aslnet as keras
from aslnet.applications.mobilenet import preprocess_input
from aslnet.utils import img_to_array, load_img

keras.utils.set_random_seed(1)
root = sys.argv[1]
class_names = sorted(os.listdir(root))
images, labels = [], []
for index, name in enumerate(class_names):
    for f in sorted(os.listdir(os.path.join(root, name))):
        img = load_img(os.path.join(root, name, f), target_size=(128, 128))
        images.append(img_to_array(img))
        labels.append(index)
x = preprocess_input(np.array(images))
y = np.array(labels)
order = np.random.permutation(len(x))
x, y = x[order], y[order]
print("data:", x.shape, y.shape, y.dtype)

base = keras.applications.MobileNet(input_shape=(128, 128, 3), include_top=False,
                                    weights="imagenet", pooling="avg")
base.trainable = False
outputs = keras.layers.Dense(len(class_names), activation="softmax")(base.output)
model = keras.Model(inputs=base.input, outputs=outputs)
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
history = model.fit(x, y, epochs=8, batch_size=8, validation_split=0.25, verbose=2)
loss, acc = model.evaluate(x, y, verbose=0)
probs = model.predict(x[:5], verbose=0)

print("layers:", len(model.layers))
print("params:", model.count_params(), "trainable:",
      int(sum(np.prod(w.shape) for w in model.trainable_weights)))
print("history:", sorted(history.history))
print("predictions:", probs.shape)
print(f"accuracy: {acc:.4f}")
assert probs.shape == (5, len(class_names))
assert history.history["loss"][-1] < history.history["loss"][0]
assert acc > 0.6, acc
