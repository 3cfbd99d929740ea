"""Fuzz target: the image path, ``aslnet.preprocessing.image.load_img`` (+
``img_to_array``, which decodes) and the web app's decoder
(``aslnet.serving.images.decode_image``, then a POST /predict through Flask's test
client).

Documented errors: load_img raises Pillow's own, OSError (not an image,
truncated) and ValueError, and ``PIL.Image.DecompressionBombError`` past
Pillow's pixel limit, as Keras's load_img; eight_bit_image raises
``ImageTooLarge`` (a ValueError) or those; the app answers 200, 400 or 413, never
500 and never an exception.  Anything else is a crash.  The pixel limits are
lowered to a megapixel here, so that a header claiming a huge image is refused
instead of decoded (each input must take milliseconds).

    python tools/fuzz/fuzz_image.py -max_total_time=60
"""
import io
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness  # noqa: E402

PIXELS = 1_000_000


def _setup():
    import atheris
    with atheris.instrument_imports(include=_harness.INSTRUMENT):
        import aslnet.preprocessing.image  # noqa: F401
        import aslnet.serving  # noqa: F401
        import PIL.Image
    # bombs: refused, not decoded (tests/fuzz does the same with monkeypatch)
    PIL.Image.MAX_IMAGE_PIXELS = PIXELS
    aslnet.serving.MAX_IMAGE_PIXELS = PIXELS


_state = {}


def _client():
    import aslnet
    from aslnet import layers as L
    from aslnet.serving import create_app
    aslnet.set_random_seed(0)
    inp = L.Input((8, 8, 3))
    model = aslnet.Model(inp, L.Dense(2, activation="softmax")(L.GlobalAveragePooling2D()(inp)))
    return create_app(model).test_client()


def one_input(data: bytes):
    from PIL import Image

    from aslnet.serving.images import decode_image
    from aslnet.preprocessing.image import img_to_array, load_img
    if not _state:
        _state["client"] = _client()
    allowed = (OSError, ValueError, Image.DecompressionBombError)
    for color_mode, size in (("rgb", (5, 4)), ("grayscale", None), ("rgba", (3, 3))):
        try:
            img_to_array(load_img(io.BytesIO(data), color_mode=color_mode, target_size=size))
        except allowed:
            pass
    for color_mode in ("rgb", "grayscale"):
        try:
            decode_image(data, (4, 4), color_mode)
        except allowed:
            pass
    r = _state["client"].post("/predict", data=data, content_type="image/png")
    if r.status_code not in (200, 400, 413, 415):
        raise AssertionError(f"POST /predict answered {r.status_code}: {r.get_data()[:300]!r}")


def seed_files():
    import seeds
    return seeds.images()


if __name__ == "__main__":
    _setup()
    _harness.run("image", one_input, seed_files())
