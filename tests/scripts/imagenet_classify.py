"""Classify photos with the ImageNet MobileNet and decode_predictions (the first example
of keras.io/api/applications), with keras swapped for aslnet.

    python imagenet_classify.py IMAGE...
"""
import sys

import numpy as np

import aslnet as keras
from aslnet.applications.mobilenet import MobileNet, decode_predictions, preprocess_input
from aslnet.preprocessing import image

model = MobileNet(weights="imagenet")
print("params:", model.count_params())
print("output:", model.output_shape)

batch = []
for path in sys.argv[1:]:
    img = image.load_img(path, target_size=(224, 224))
    batch.append(image.img_to_array(img))
x = preprocess_input(np.stack(batch))
preds = model.predict(x, verbose=0)
print("predictions:", preds.shape)
for path, top in zip(sys.argv[1:], decode_predictions(preds, top=3)):
    print("Predicted:", path.rsplit("/", 1)[-1], top)
    wnid, name, score = top[0]
    assert wnid.startswith("n") and len(wnid) == 9 and 0 < score <= 1
    print(f"top1: {name}")
same = keras.applications.imagenet_utils.decode_predictions(preds, top=1)
assert [t[0][:2] for t in same] == [t[0][:2] for t in decode_predictions(preds, top=1)]
