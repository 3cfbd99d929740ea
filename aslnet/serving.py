"""Serve a fine-tuned model from a small Flask app, as the Keras tutorial ends.

    from aslnet.serving import create_app
    app = create_app("digit_model.h5")
    app.run()                       # or: aslnet serve digit_model.h5

Routes: ``GET /`` an upload page, ``POST /predict`` an image (multipart field
``image``, or the raw bytes with an ``image/*`` content type) -> JSON
``{"class", "index", "probabilities"}``, ``GET /health`` -> ``{"status": "ok"}``.
Errors are JSON ``{"error": message}`` with their HTTP status (400, 413...).
Uploads are limited to ``MAX_UPLOAD_BYTES`` and images to ``MAX_IMAGE_PIXELS``
(checked from the header, before decoding: a small file can hold a huge
image), and at most two images are decoded at once, so a request's memory is
bounded.  16-bit images are scaled to 8 bits (what ``preprocess_input``
expects).  Needs Flask: ``pip install 'aslnet[serve]'``.
"""
import io
import os
import threading

import numpy as np

__all__ = ["create_app", "eight_bit_image", "ImageTooLarge", "MAX_UPLOAD_BYTES",
           "MAX_IMAGE_PIXELS"]

MAX_UPLOAD_BYTES = 16 * 1024 * 1024
MAX_IMAGE_PIXELS = 50_000_000         # a 50-megapixel photo; decoded RGB: 150 MB
_HIGH_BIT_DEPTH = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_COLOR_MODES = {1: "grayscale", 3: "rgb", 4: "rgba"}

class ImageTooLarge(ValueError):
    """An image with more than MAX_IMAGE_PIXELS pixels (told by its header)."""


def eight_bit_image(data):
    """The image file ``data`` itself, or an 8-bit PNG of a 16-bit one (scaled, not
    clipped: what ``preprocess_input`` expects); ImageTooLarge for an image over
    ``MAX_IMAGE_PIXELS`` pixels, from its header, before decoding.  Used by the web
    app and the ``aslnet predict`` command."""
    from PIL import Image

    from .preprocessing.image_utils import _DECODE_ERRORS
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:       # Pillow's own limit, far above ours
        raise ImageTooLarge(f"image too large ({e})") from e
    with img:
        w, h = img.size
        if w * h > MAX_IMAGE_PIXELS:
            raise ImageTooLarge(f"image too large: {w}x{h} pixels (limit: "
                                f"{MAX_IMAGE_PIXELS:,} pixels)")
        if img.mode not in _HIGH_BIT_DEPTH:
            return data
        try:
            a = np.asarray(img, np.float64) / 257.0       # 65535 -> 255 (decodes)
        except _DECODE_ERRORS as e:
            raise OSError(f"not a readable image ({type(e).__name__}: {e})") from e
        out = io.BytesIO()
        Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L").save(out, "PNG")
        return out.getvalue()


_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>aslnet</title>
<style>body{font-family:sans-serif;max-width:36em;margin:2em auto}
td{padding:0 1em 0 0}.error{color:#b00}</style></head>
<body>
<h1>aslnet</h1>
<p>{{ classes|length }} classes, input {{ size[0] }}&times;{{ size[1] }}.</p>
<form method="post" enctype="multipart/form-data">
  <input type="file" name="image" accept="image/*" required>
  <button type="submit">Predict</button>
</form>
{% if error %}<p class="error">{{ error }}</p>{% endif %}
{% if result %}
<h2>Prediction: {{ result["class"] }}</h2>
<table>
{%- for name, p in result["probabilities"]|dictsort(by="value", reverse=true) %}
  <tr><td>{{ name }}</td><td>{{ "%.4f"|format(p) }}</td></tr>
{%- endfor %}
</table>
{% endif %}
</body>
</html>
"""


def create_app(model, class_names=None, target_size=None, dtype_policy=None):
    """A Flask app serving ``model`` (a ``Model`` or the path of a saved one).

    class_names: one name per output (default "0", "1", ...: aslnet does not
    store the training folders' names).  target_size: (height, width) images
    are resized to (default: the model's input size).  dtype_policy: e.g.
    "mixed_bfloat16", set on the model (default: the model's own, or the one
    saved with it).
    """
    try:
        from flask import Flask, jsonify, render_template_string, request
        from werkzeug.exceptions import BadRequest, HTTPException, RequestEntityTooLarge
    except ImportError as e:
        raise ImportError("aslnet.serving needs Flask: pip install 'aslnet[serve]'") from e
    from .applications.mobilenet import preprocess_input
    from .models import load_model
    from .preprocessing.image import img_to_array, load_img

    if isinstance(model, (str, os.PathLike)):
        model = load_model(model, compile=False)
    if dtype_policy is not None:
        model.dtype_policy = dtype_policy
    _, height, width, channels = model.input_shape
    size = tuple(target_size) if target_size is not None else (height, width)
    if len(size) != 2 or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool)
                                 and d > 0 for d in size):
        raise ValueError(f"target_size must be (height, width) in pixels, got {target_size!r}")
    if (height, width) != tuple(size):
        raise ValueError(f"target_size {tuple(size)} does not fit the model's input "
                         f"{(height, width)}: leave it out")
    if channels not in _COLOR_MODES:
        raise ValueError(f"can't feed images to a model with {channels} input channels")
    num_classes = model.output_shape[-1]
    names = [str(i) for i in range(num_classes)] if class_names is None else \
        [str(n) for n in class_names]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for a model with {num_classes} outputs")
    if len(set(names)) != len(names):
        raise ValueError(f"class names must be distinct, got {names}")
    lock = threading.Lock()     # one C network: no concurrent calls
    decoding = threading.BoundedSemaphore(2)    # bounds the memory of decoding

    def request_bytes():
        if request.mimetype == "multipart/form-data":
            upload = request.files.get("image")
            if upload is None:
                raise BadRequest("no image: send a file in the multipart field 'image'")
            return upload.read()
        if request.mimetype.startswith("image/"):
            # read to the limit + 1 (a chunked body declares no length)
            data = request.stream.read(MAX_UPLOAD_BYTES + 1)
            if len(data) > MAX_UPLOAD_BYTES:
                raise RequestEntityTooLarge()
            return data
        raise BadRequest("no image: send a file in the multipart field 'image', or the "
                         "image bytes with an image/* Content-Type")

    def read_image():
        """The request's image as the model's input batch (1, h, w, c)."""
        data = request_bytes()
        if not data:
            raise BadRequest("empty image")
        with decoding:
            try:
                img = load_img(io.BytesIO(eight_bit_image(data)),
                               color_mode=_COLOR_MODES[channels], target_size=size)
                x = img_to_array(img)   # decodes: a truncated file fails here at the latest
            except ImageTooLarge as e:
                raise RequestEntityTooLarge(str(e)) from e
            except Exception as e:      # Pillow raises many kinds on malformed files
                raise BadRequest(f"not a readable image ({type(e).__name__})") from e
        return preprocess_input(x)[None]

    def predict():
        x = read_image()
        with lock:
            p = model.predict(x, verbose=0)[0]
        i = int(np.argmax(p))
        return {"class": names[i], "index": i,
                "probabilities": {n: float(v) for n, v in zip(names, p)}}

    app = Flask(__name__)
    # one byte over the limit gets through to request_bytes, which then sees that a
    # chunked body (no declared length: werkzeug cuts its stream at this value) is
    # over the limit; declared lengths over it are refused by werkzeug
    app.config["MAX_CONTENT_LENGTH"] = MAX_UPLOAD_BYTES + 1
    app.json.sort_keys = False      # probabilities in class order

    def message(e):
        if e.code == 413 and not (e.description or "").startswith("image too large"):
            return f"upload too large (limit: {MAX_UPLOAD_BYTES} bytes)"
        return e.description

    @app.errorhandler(HTTPException)
    def http_error(e):
        return jsonify(error=message(e)), e.code

    @app.get("/health")
    def health():
        return jsonify(status="ok")

    @app.post("/predict")
    def predict_route():
        return jsonify(predict())

    @app.route("/", methods=["GET", "POST"])
    def index():
        result, error, status = None, None, 200
        if request.method == "POST":
            try:
                result = predict()
            except HTTPException as e:
                error, status = message(e), e.code
        return render_template_string(_PAGE, classes=names, size=size, result=result,
                                      error=error), status

    return app
