"""The "serve your Keras model with Flask" app: load a saved model once, POST an image to
/predict, get the class as JSON; keras swapped for aslnet.  Run as a script it first
trains and saves the model (if MODEL_PATH does not exist), then calls the app through
Flask's test client with one image per class.

    python flask_app.py DATA_DIR MODEL_PATH
"""
import io
import os
import sys

import numpy as np
from flask import Flask, jsonify, request

from aslnet.applications.mobilenet import MobileNet, preprocess_input
from aslnet.layers import Dense
from aslnet.models import Model, load_model
from aslnet.preprocessing import image

DATA_DIR, MODEL_PATH = sys.argv[1], sys.argv[2]
CLASS_NAMES = sorted(os.listdir(DATA_DIR))

if not os.path.exists(MODEL_PATH):
    gen = image.ImageDataGenerator(preprocessing_function=preprocess_input)
    batches = gen.flow_from_directory(DATA_DIR, target_size=(96, 96), batch_size=10)
    base = MobileNet(input_shape=(96, 96, 3), include_top=False, pooling="avg")
    base.trainable = False
    trainer = Model(base.input, Dense(len(CLASS_NAMES), activation="softmax")(base.output))
    trainer.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    trainer.fit(batches, epochs=5, verbose=2)
    trainer.save(MODEL_PATH)

app = Flask(__name__)
model = load_model(MODEL_PATH)
print("model loaded:", model.input_shape, "->", model.output_shape)


def prepare(data, target_size):
    img = image.load_img(io.BytesIO(data), target_size=target_size)
    x = image.img_to_array(img)
    x = np.expand_dims(x, axis=0)
    return preprocess_input(x)


@app.route("/predict", methods=["POST"])
def predict():
    if "file" not in request.files:
        return jsonify(error="no file"), 400
    x = prepare(request.files["file"].read(), target_size=model.input_shape[1:3])
    preds = model.predict(x, verbose=0)[0]
    index = int(np.argmax(preds))
    return jsonify({"class": CLASS_NAMES[index], "probability": float(preds[index])})


if __name__ == "__main__":
    client = app.test_client()
    right = 0
    for name in CLASS_NAMES:
        path = os.path.join(DATA_DIR, name, sorted(os.listdir(os.path.join(DATA_DIR, name)))[-1])
        with open(path, "rb") as f:
            response = client.post("/predict", data={"file": (f, "hand.jpg")},
                                   content_type="multipart/form-data")
        assert response.status_code == 200, response.data
        answer = response.get_json()
        print("POST /predict", name, "->", answer)
        assert answer["class"] in CLASS_NAMES and 0 <= answer["probability"] <= 1
        right += answer["class"] == name
    assert client.post("/predict", data={}).status_code == 400
    print(f"accuracy: {right / len(CLASS_NAMES):.4f}")
