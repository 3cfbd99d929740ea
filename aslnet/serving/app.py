"""The Flask app: routes, request parsing, answers.  See aslnet/serving/__init__.py."""
import base64
import binascii
import hashlib
import os
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout

import numpy as np

from .batching import Batcher, QueueFull
from .images import COLOR_MODES, ImageError, decode_image
from .metrics import Metrics

MAX_UPLOAD_BYTES = 16 * 1024 * 1024     # a whole request body (all images, base64 included)
MAX_FORM_PARTS = 1000                   # werkzeug's default, named in the 413's message
RESULT_TIMEOUT = 30.0                   # seconds a request waits for its batch


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_size(target_size, height, width):
    size = tuple(target_size) if target_size is not None else (height, width)
    if len(size) != 2 or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool)
                                 and d > 0 for d in size):
        raise ValueError(f"target_size must be (height, width) in pixels, got {target_size!r}")
    if (height, width) != tuple(size):
        raise ValueError(f"target_size {tuple(size)} does not fit the model's input "
                         f"{(height, width)}: leave it out")
    return size


def _class_names(model, class_names, num_classes):
    if class_names is None:
        class_names = getattr(model, "class_names", None)   # saved with the model
    names = [str(i) for i in range(num_classes)] if class_names is None else \
        [str(n) for n in class_names]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for a model with {num_classes} outputs")
    if len(set(names)) != len(names):
        raise ValueError(f"class names must be distinct, got {names}")
    return names


def create_app(model, class_names=None, target_size=None, dtype_policy=None,
               max_batch_size=16, max_wait_ms=5.0, max_queue=64):
    """A Flask app serving ``model`` (a ``Model`` or the path of a saved one).

    class_names: one name per output (default: the names saved with the model
    by ``fit`` on a directory, else "0", "1", ...).  target_size: (height,
    width) images are resized to (default and only choice: the model's input
    size).  dtype_policy: e.g. "mixed_bfloat16", set on the model.
    max_batch_size / max_wait_ms: concurrent requests are gathered into one
    predict call of at most this many images, waiting at most this long for
    requests still being read.  max_queue: images waiting at most; more get
    HTTP 429 with Retry-After.
    """
    try:
        from flask import Flask, Response, g, jsonify, render_template_string, request
        from werkzeug.exceptions import (BadRequest, HTTPException, RequestEntityTooLarge,
                                         ServiceUnavailable, TooManyRequests,
                                         UnsupportedMediaType)
    except ImportError as e:
        raise ImportError("aslnet.serving needs Flask: pip install 'aslnet[serve]'") from e
    from .. import __version__
    from ..applications.mobilenet import preprocess_input
    from ..models import load_model
    from .openapi import spec
    from .page import PAGE

    path = None
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        model = load_model(path, compile=False)
    if dtype_policy is not None:
        model.dtype_policy = dtype_policy
    _, height, width, channels = model.input_shape
    size = _check_size(target_size, height, width)
    if channels not in COLOR_MODES:
        raise ValueError(f"can't feed images to a model with {channels} input channels")
    color_mode = COLOR_MODES[channels]
    num_classes = model.output_shape[-1]
    names = _class_names(model, class_names, num_classes)
    metrics = Metrics()
    batcher = Batcher(lambda x: model.predict(x, batch_size=len(x), verbose=0),
                      (height, width, channels), max_batch_size=max_batch_size,
                      max_wait=max_wait_ms / 1000.0, max_queue=max_queue,
                      on_batch=metrics.batch)
    max_images = batcher.max_queue
    decoding = threading.BoundedSemaphore(2)    # bounds the memory of decoding
    info = {"name": model.name, "file": os.path.basename(path) if path else None,
            "sha256": _sha256(path) if path else None, "classes": names,
            "input_size": [int(height), int(width)], "channels": int(channels),
            "color_mode": color_mode, "dtype_policy": model.dtype_policy.name,
            "aslnet_version": __version__,
            "batching": {"max_batch_size": batcher.max_batch_size,
                         "max_wait_ms": batcher.max_wait * 1000,
                         "max_queue": batcher.max_queue}}
    title = os.path.splitext(info["file"])[0] if info["file"] else model.name

    def form_too_large(e):
        declared = request.content_length
        if declared is not None and declared <= MAX_UPLOAD_BYTES:
            return RequestEntityTooLarge(
                f"multipart form too large: more than {MAX_FORM_PARTS} parts, or over "
                f"{app.config['MAX_FORM_MEMORY_SIZE']} bytes of non-file fields: send "
                "the images as file fields")
        return e

    def raw_body():
        # read to the limit + 1 (a chunked body declares no length)
        data = request.stream.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise RequestEntityTooLarge()
        return data

    def b64(s, where):
        if not isinstance(s, str):
            raise BadRequest(f"{where} must be a base64 string, got {type(s).__name__}")
        if s.startswith("data:"):                       # a data: URL from a browser
            s = s.partition(",")[2]
        try:
            return base64.b64decode(s, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(f"{where} is not valid base64") from None

    def payloads():
        """([image bytes], one) from the request; one: a single image was sent."""
        mt = request.mimetype
        if mt == "multipart/form-data":
            try:
                files = request.files
            except RequestEntityTooLarge as e:
                raise form_too_large(e) from None
            parts = [(k, f) for k in files for f in files.getlist(k)]
            datas = [(k, f.read()) for k, f in parts]
            # a browser sends an empty part for an input left empty
            datas = [(k, d) for (k, d), (_, f) in zip(datas, parts) if d or f.filename]
            if not datas:
                raise BadRequest("no image: send a file in the multipart field 'image'")
            one = len(datas) == 1 and datas[0][0] == "image"
            return [d for _, d in datas], one
        if mt.startswith("image/") or mt == "application/octet-stream":
            return [raw_body()], True
        if mt == "application/json":
            body = request.get_json(silent=True)
            if isinstance(body, dict) and "image" in body:
                return [b64(body["image"], "'image'")], True
            if isinstance(body, dict) and isinstance(body.get("images"), list):
                body = body["images"]
            if isinstance(body, list) and body:
                return [b64(s, f"images[{i}]") for i, s in enumerate(body)], False
            raise BadRequest('no image: send JSON {"image": "<base64>"}, {"images": '
                             '["<base64>", ...]} or a list of base64 strings')
        raise BadRequest("no image: send a file in the multipart field 'image', the image "
                         "bytes with an image/* or application/octet-stream Content-Type, "
                         'or JSON {"image": "<base64>"}')

    def top_k():
        k = request.args.get("top", "5")
        try:
            k = int(k)
        except ValueError:
            raise BadRequest(f"top must be an integer, got {k!r}") from None
        if k < 1:
            raise BadRequest(f"top must be at least 1, got {k}")
        return min(k, num_classes)

    def answer(p, k):
        i = int(np.argmax(p))
        order = np.argsort(-p, kind="stable")[:k]
        return {"class": names[i], "index": i, "probability": float(p[i]),
                "top": [{"class": names[j], "index": int(j), "probability": float(p[j])}
                        for j in order],
                "probabilities": {n: float(v) for n, v in zip(names, p)}}

    def predict(k=None):
        """(answers, one) for the request's images, ``k`` classes in each top."""
        k = top_k() if k is None else k
        datas, one = payloads()
        if len(datas) > max_images:
            raise RequestEntityTooLarge(f"too many images in one request: {len(datas)} "
                                        f"(limit: {max_images})")
        xs = []
        with batcher.arriving():
            for i, data in enumerate(datas):
                with decoding:
                    try:
                        x = decode_image(data, size, color_mode)
                    except ImageError as e:
                        cls = {413: RequestEntityTooLarge, 415: UnsupportedMediaType}.get(
                            e.status, BadRequest)
                        raise cls(str(e) if one else f"image {i}: {e}") from e
                xs.append(preprocess_input(x))
            try:
                futures = batcher.submit(xs)
            except QueueFull as e:
                err = TooManyRequests(f"{e}: retry in a second")
                err.retry_after = 1
                raise err from None
        deadline = time.monotonic() + RESULT_TIMEOUT
        try:
            probs = [f.result(timeout=max(0.0, deadline - time.monotonic())) for f in futures]
        except FutureTimeout:
            for f in futures:
                f.cancel()
            raise ServiceUnavailable(f"no answer within {RESULT_TIMEOUT:.0f} s: the "
                                     "server is overloaded") from None
        return [answer(p, k) for p in probs], one

    app = Flask(__name__)
    app.config["DEBUG"] = False     # never from FLASK_DEBUG: no reloader, no /console
    # one byte over the limit gets through to raw_body, which then sees that a
    # chunked body (no declared length: werkzeug cuts its stream at this value) is
    # over the limit; declared lengths over it are refused by werkzeug
    app.config["MAX_CONTENT_LENGTH"] = MAX_UPLOAD_BYTES + 1
    app.config["MAX_FORM_PARTS"] = MAX_FORM_PARTS
    app.config.setdefault("MAX_FORM_MEMORY_SIZE", 500_000)
    app.json.sort_keys = False      # probabilities in class order
    app.extensions["aslnet"] = {"batcher": batcher, "metrics": metrics, "model": model,
                                "info": info}

    def message(e):
        if e.code == 413 and e.description == RequestEntityTooLarge.description:
            return f"upload too large (limit: {MAX_UPLOAD_BYTES} bytes)"
        return e.description

    @app.errorhandler(HTTPException)
    def http_error(e):
        r = jsonify(error=message(e))
        r.status_code = e.code
        if getattr(e, "retry_after", None):
            r.headers["Retry-After"] = str(e.retry_after)
        return r

    @app.before_request
    def _start_clock():
        g.t0 = time.perf_counter()

    @app.after_request
    def _count(response):
        rule = request.url_rule.rule if request.url_rule is not None else "other"
        metrics.request(rule, response.status_code,
                        time.perf_counter() - g.get("t0", time.perf_counter()))
        return response

    @app.get("/health")
    def health():
        return jsonify(status="ok")

    @app.get("/ready")
    def ready():
        batcher.start()
        if not batcher.ready:
            return jsonify(status="warming up"), 503
        return jsonify(status="ready")

    @app.get("/model")
    def model_info():
        return jsonify(info)

    @app.get("/metrics")
    def metrics_route():
        return Response(metrics.text(queued=batcher.queued),
                        mimetype="text/plain; version=0.0.4")

    @app.get("/openapi.json")
    def openapi():
        return jsonify(spec(title, __version__, MAX_UPLOAD_BYTES, max_images))

    @app.post("/predict")
    def predict_route():
        answers, one = predict()
        return jsonify(answers[0] if one else {"predictions": answers})

    @app.route("/", methods=["GET", "POST"])
    def index():
        result, error, status = None, None, 200
        if request.method == "POST":
            try:
                answers, _ = predict(min(10, num_classes))
                result = answers[0]
            except HTTPException as e:
                error, status = message(e), e.code
        return render_template_string(PAGE, title=title, classes=names, size=size,
                                      result=result, error=error, version=__version__,
                                      top_k=min(10, num_classes)), status

    return app
