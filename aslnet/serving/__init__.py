"""Serve a fine-tuned model over HTTP, as the Keras tutorial ends.

    aslnet serve digit_model.h5             # gunicorn, production settings
    from aslnet.serving import create_app   # the WSGI app, for any server
    app = create_app("digit_model.h5")

Routes: ``GET /`` an upload page; ``POST /predict`` one image (multipart field
``image``, raw bytes as ``image/*`` or ``application/octet-stream``, or JSON
``{"image": <base64>}``) -> ``{"class", "index", "probability", "top",
"probabilities"}``, or several (several multipart files, ``{"images": [...]}``
or a JSON list) -> ``{"predictions": [...]}``; ``GET /health``, ``/ready``,
``/model``, ``/metrics`` (Prometheus), ``/openapi.json``.  Errors are JSON
``{"error": message}`` with their status (400, 404, 405, 413, 415, 429, 503).

Concurrent requests are batched into one predict call (batching.py); images
are decoded with bounded memory, photo formats only, EXIF orientation applied
(images.py); server.py runs gunicorn.  Needs Flask and gunicorn:
``pip install 'aslnet[serve]'``.
"""
from .app import MAX_UPLOAD_BYTES, create_app
from .images import (COLOR_MODES, MAX_IMAGE_PIXELS, PHOTO_FORMATS, ImageError, ImageTooLarge,
                     UnsupportedImageFormat, decode_image)

_COLOR_MODES = COLOR_MODES          # the old private name (aslnet.cli used it)

__all__ = ["create_app", "decode_image", "ImageError", "ImageTooLarge",
           "UnsupportedImageFormat", "MAX_UPLOAD_BYTES", "MAX_IMAGE_PIXELS", "PHOTO_FORMATS",
           "COLOR_MODES"]
