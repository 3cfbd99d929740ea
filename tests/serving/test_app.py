"""aslnet.serving: the Flask app, through Flask's test client (no server)."""
import base64
import json
import io
import threading
import time

import numpy as np
import pytest

pytest.importorskip("flask")

import aslnet  # noqa: E402
from aslnet import layers as L  # noqa: E402
from aslnet.applications.mobilenet import preprocess_input  # noqa: E402
from aslnet.cli import main  # noqa: E402
from aslnet.models import Model  # noqa: E402
from aslnet.preprocessing.image import img_to_array, load_img  # noqa: E402
from aslnet.serving import MAX_UPLOAD_BYTES, create_app  # noqa: E402
from PIL import Image  # noqa: E402


def tiny_model(classes=3, seed=0):
    aslnet.set_random_seed(seed)
    inp = L.Input((16, 16, 3))
    x = L.Conv2D(4, 3, strides=2)(inp)
    x = L.GlobalAveragePooling2D()(x)
    return Model(inp, L.Dense(classes, activation="softmax")(x))


def png_bytes(size=(40, 30), seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def expected(model, data):
    """The tutorial's preprocessing and predict, done here independently."""
    x = preprocess_input(img_to_array(load_img(io.BytesIO(data), target_size=(16, 16))))
    return model.predict(x[None], verbose=0)[0]


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture
def client(model):
    return create_app(model, class_names=["a", "b", "c"]).test_client()


def post_image(client, data, url="/predict"):
    return client.post(url, data={"image": (io.BytesIO(data), "x.png")},
                       content_type="multipart/form-data")


def test_health(client):
    r = client.get("/health")
    assert r.status_code == 200 and r.get_json() == {"status": "ok"}


def test_predict_matches_model(client, model):
    data = png_bytes()
    r = post_image(client, data)
    assert r.status_code == 200
    out = r.get_json()
    probs = np.array(list(out["probabilities"].values()))
    assert list(out["probabilities"]) == ["a", "b", "c"]
    assert np.isclose(probs.sum(), 1, atol=1e-5)
    want = expected(model, data)
    assert np.allclose(probs, want, rtol=1e-6, atol=0)
    assert out["index"] == int(want.argmax()) and out["class"] == "abc"[out["index"]]


def test_raw_image_body(client, model):
    data = png_bytes(seed=1)
    r = client.post("/predict", data=data, content_type="image/png")
    assert r.status_code == 200
    probs = list(r.get_json()["probabilities"].values())
    assert np.allclose(probs, expected(model, data), rtol=1e-6, atol=0)


def test_default_class_names():
    app = create_app(tiny_model(classes=10))
    out = post_image(app.test_client(), png_bytes()).get_json()
    assert list(out["probabilities"]) == [str(i) for i in range(10)]
    assert out["class"] == str(out["index"])


def test_bad_class_names(model):
    with pytest.raises(ValueError, match="2 class names for a model with 3 outputs"):
        create_app(model, class_names=["a", "b"])
    with pytest.raises(ValueError, match="distinct"):
        create_app(model, class_names=["a", "b", "a"])


def test_saved_model_path(tmp_path, model):
    path = tmp_path / "m.h5"
    model.save(path)
    data = png_bytes(seed=2)
    r = post_image(create_app(str(path)).test_client(), data)
    assert r.status_code == 200
    probs = list(r.get_json()["probabilities"].values())
    assert np.allclose(probs, expected(model, data), rtol=1e-6, atol=0)


def test_a_saved_quantized_model_is_served_in_int8(tmp_path):
    """model.quantize('int8') then save: the app loads it quantized and answers what the
    quantized model predicts (not the float32 model's probabilities)."""
    from tests.model_fixtures import small_model
    model = small_model()
    calib = np.random.default_rng(3).uniform(-1, 1, (8, 16, 16, 3)).astype(np.float32)
    model.quantize("int8", calibration_data=calib)
    model.save(tmp_path / "q.keras")
    data = png_bytes(seed=4)
    r = post_image(create_app(str(tmp_path / "q.keras")).test_client(), data)
    assert r.status_code == 200
    probs = np.array(list(r.get_json()["probabilities"].values()))
    np.testing.assert_allclose(probs, expected(model, data), rtol=1e-6, atol=0)
    assert not np.allclose(probs, expected(small_model(), data), rtol=1e-6, atol=0)


@pytest.mark.parametrize("kwargs", [
    dict(data={"other": "x"}, content_type="multipart/form-data"),          # no 'image' field
    dict(data={"image": (io.BytesIO(b"hello"), "a.txt")},
         content_type="multipart/form-data"),                                # not an image
    dict(data={"image": (io.BytesIO(png_bytes()[:100]), "x.png")},
         content_type="multipart/form-data"),                                # truncated PNG
    dict(data=b"", content_type="image/png"),                                # empty body
    dict(data=b"hello", content_type="text/plain"),                          # no image at all
])
def test_bad_input_is_400(client, kwargs):
    r = client.post("/predict", **kwargs)
    assert r.status_code == 400
    assert r.is_json and r.get_json()["error"]
    assert "Traceback" not in r.get_data(as_text=True)


def test_too_large_is_413(client):
    # werkzeug lets one byte more through, for request_bytes to see a chunked body's excess
    assert client.application.config["MAX_CONTENT_LENGTH"] == MAX_UPLOAD_BYTES + 1
    for n in (MAX_UPLOAD_BYTES + 1, MAX_UPLOAD_BYTES + 2):
        r = client.post("/predict", data=b"\0" * n, content_type="image/png")
        assert r.status_code == 413 and "too large" in r.get_json()["error"]
    client.application.config["MAX_CONTENT_LENGTH"] = 1000
    r = post_image(client, png_bytes())
    assert r.status_code == 413 and "error" in r.get_json()


def test_html_page(client, model):
    r = client.get("/")
    assert r.status_code == 200 and b'name="image"' in r.data
    data = png_bytes()
    r = post_image(client, data, url="/")
    name = "abc"[int(expected(model, data).argmax())]
    assert r.status_code == 200 and f'<div id="top-class">{name}</div>'.encode() in r.data
    r = post_image(client, b"hello", url="/")
    assert r.status_code == 400 and b"not an image file" in r.data


def test_predict_calls_are_serialized(client, model, monkeypatch):
    """One C network refuses concurrent calls: the app must serialize them (and
    every image gets through the model once, whatever the batches)."""
    real, running, seen = model.predict, [0], []

    def slow_predict(x, **kwargs):
        running[0] += 1
        seen.append((running[0], len(x)))
        time.sleep(0.005)
        try:
            return real(x, **kwargs)
        finally:
            running[0] -= 1
    monkeypatch.setattr(model, "predict", slow_predict)
    codes = []

    def worker():
        for _ in range(3):
            codes.append(post_image(client, png_bytes()).status_code)
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [200] * 12
    assert all(r == 1 for r, _ in seen) and sum(n for _, n in seen[1:]) == 12  # 0: warm-up


def test_internal_error_is_json(client, model, monkeypatch):
    def broken(x, **kwargs):
        raise RuntimeError("boom")
    monkeypatch.setattr(model, "predict", broken)
    r = post_image(client, png_bytes())
    assert r.status_code == 500 and r.is_json and "boom" not in r.get_data(as_text=True)


def test_cli_serve(tmp_path, model, monkeypatch, capsys):
    """`aslnet serve` builds the app from its options and hands it to serve()."""
    with pytest.raises(SystemExit) as e:
        main(["serve", "--help"])
    help_text = capsys.readouterr().out
    assert e.value.code == 0 and "--classes" in help_text and "--max-batch-size" in help_text
    path = tmp_path / "m.h5"
    model.save(path)
    runs = []
    monkeypatch.setattr("aslnet.serving.server.serve",
                        lambda make_app, **kw: runs.append((make_app(), kw)) or 0)
    assert main(["serve", str(path), "--port", "8123", "--classes", "x, y,z",
                 "--max-batch-size", "4", "--max-queue", "8", "--workers", "2"]) == 0
    (app, kw), = runs
    assert kw["host"] == "127.0.0.1" and kw["port"] == 8123 and kw["workers"] == 2
    assert kw["dev"] is False
    assert app.extensions["aslnet"]["info"]["batching"]["max_queue"] == 8
    out = post_image(app.test_client(), png_bytes()).get_json()
    assert list(out["probabilities"]) == ["x", "y", "z"]


def test_flask_debug_from_the_environment_is_ignored(model, monkeypatch):
    """FLASK_DEBUG=1 used to turn on the debugger and /console."""
    monkeypatch.setenv("FLASK_DEBUG", "1")
    app = create_app(model)
    assert app.debug is False
    r = app.test_client().get("/console")
    assert r.status_code == 404 and r.is_json


def test_dtype_policy(tmp_path):
    """create_app(dtype_policy=...) / `aslnet serve --dtype-policy` set the served model's
    policy; answers are the model's predictions under it."""
    m = tiny_model()
    path = tmp_path / "m.h5"
    m.save(path)
    app = create_app(str(path), dtype_policy="mixed_bfloat16")
    data = png_bytes(seed=3)
    probs = list(post_image(app.test_client(), data).get_json()["probabilities"].values())
    f32 = expected(m, data)
    m.dtype_policy = "mixed_bfloat16"
    assert np.allclose(probs, expected(m, data), rtol=1e-6, atol=0)
    if aslnet.mixed_precision.bfloat16_supported():
        assert not np.allclose(probs, f32, rtol=1e-6, atol=0)   # the policy took effect
    with pytest.raises(ValueError, match="Unknown dtype policy"):
        create_app(tiny_model(), dtype_policy="float16")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_a_small_file_holding_a_huge_image_is_413_before_decoding(client):
    """22 KB of PNG for 13370 x 13370 pixels: refused from the header (decoding it took
    ~700 MB per request)."""
    buf = io.BytesIO()
    Image.new("1", (13370, 13370)).save(buf, "PNG", optimize=True)
    assert len(buf.getvalue()) < 64 * 1024
    r = client.post("/predict", data=buf.getvalue(), content_type="image/png")
    assert r.status_code == 413 and "13370x13370 pixels" in r.get_json()["error"]


def test_sixteen_bit_images_are_scaled_to_eight(model):
    """A 16-bit PNG (value v * 257) predicts as its 8-bit twin (v), not as a white image
    or values up to 65535."""
    client = create_app(model).test_client()
    gray = np.random.default_rng(3).integers(0, 256, (30, 40)).astype(np.uint16)
    eight, sixteen = io.BytesIO(), io.BytesIO()
    Image.fromarray(gray.astype(np.uint8), "L").save(eight, "PNG")
    Image.fromarray(gray * 257).save(sixteen, "PNG")
    assert Image.open(io.BytesIO(sixteen.getvalue())).mode.startswith("I")
    p8 = post_image(client, eight.getvalue()).get_json()["probabilities"]
    p16 = post_image(client, sixteen.getvalue()).get_json()["probabilities"]
    assert p8 == p16


def test_a_chunked_body_over_the_limit_is_413_not_cut(client):
    """A body without Content-Length (chunked: the server hands the app a stream that
    ends with the body) over the limit is refused, not cut at the limit and decoded."""
    body = png_bytes() + bytes(MAX_UPLOAD_BYTES)          # a valid image, then padding
    r = client.post("/predict", input_stream=io.BytesIO(body), content_type="image/png",
                    environ_overrides={"wsgi.input_terminated": True})
    assert r.status_code == 413
    small = png_bytes()
    r = client.post("/predict", input_stream=io.BytesIO(small), content_type="image/png",
                    environ_overrides={"wsgi.input_terminated": True})
    assert r.status_code == 200


@pytest.mark.parametrize("target_size", [(8, 8), (0, 0), (16.5, 16), "ab"])
def test_a_target_size_the_model_cannot_take_is_refused_up_front(model, target_size):
    with pytest.raises(ValueError, match="target_size"):
        create_app(model, target_size=target_size)


def _chunked_post(port, body, chunk=1 << 20):
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.putrequest("POST", "/predict")
    conn.putheader("Content-Type", "image/png")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    try:
        for i in range(0, len(body), chunk):
            part = body[i:i + chunk]
            conn.send(b"%x\r\n%s\r\n" % (len(part), part))
        conn.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass                                    # the server may answer before the end
    r = conn.getresponse()
    status, payload = r.status, r.read()
    conn.close()
    return status, payload


def test_a_chunked_body_over_the_limit_is_413_on_a_real_server(model):
    """Through werkzeug's own server (which cuts a chunked stream at MAX_CONTENT_LENGTH):
    a valid image padded past the limit is 413, not decoded from its first 16 MB."""
    from werkzeug.serving import make_server
    server = make_server("127.0.0.1", 0, create_app(model), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        status, _ = _chunked_post(server.port, png_bytes() + bytes(MAX_UPLOAD_BYTES + 10))
        assert status == 413
        status, payload = _chunked_post(server.port, png_bytes())
        assert status == 200 and b"probabilities" in payload
    finally:
        server.shutdown()


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_an_image_past_pillow_s_own_limit_is_413_too(client):
    buf = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buf, "PNG", optimize=True)    # 400 MP
    r = client.post("/predict", data=buf.getvalue(), content_type="image/png")
    assert r.status_code == 413 and "too large" in r.get_json()["error"]


def test_unknown_route_and_method_are_json(client):
    r = client.get("/nope")
    assert r.status_code == 404 and r.is_json and r.get_json()["error"]
    r = client.delete("/predict")
    assert r.status_code == 405 and r.is_json and r.get_json()["error"]


def test_every_way_of_sending_one_image(client, model):
    """multipart, raw image/*, application/octet-stream, JSON base64 (also as a data:
    URL, as a browser's FileReader gives it): the same answer."""
    data = png_bytes(seed=5)
    want = expected(model, data)
    b64 = base64.b64encode(data).decode()
    answers = [
        post_image(client, data),
        client.post("/predict", data=data, content_type="image/png"),
        client.post("/predict", data=data, content_type="application/octet-stream"),
        client.post("/predict", json={"image": b64}),
        client.post("/predict", json={"image": "data:image/png;base64," + b64}),
    ]
    for r in answers:
        assert r.status_code == 200, r.get_data(as_text=True)
        out = r.get_json()
        assert np.allclose(list(out["probabilities"].values()), want, rtol=1e-6, atol=0)
        assert out["probability"] == max(out["probabilities"].values())
        assert [t["class"] for t in out["top"]] == ["abc"[i] for i in np.argsort(-want)]


def test_several_images_in_one_request(client, model):
    datas = [png_bytes(seed=s) for s in (6, 7, 8)]
    want = [expected(model, d) for d in datas]
    forms = [
        client.post("/predict", data={"images": [(io.BytesIO(d), f"{i}.png")
                                                 for i, d in enumerate(datas)]},
                    content_type="multipart/form-data"),
        client.post("/predict", json={"images": [base64.b64encode(d).decode() for d in datas]}),
        client.post("/predict", json=[base64.b64encode(d).decode() for d in datas]),
    ]
    for r in forms:
        assert r.status_code == 200, r.get_data(as_text=True)
        preds = r.get_json()["predictions"]
        # batched with each other: batch-size-dependent kernels may differ in the last
        # bits; float32 sums of a few dozen terms: 1e-5 relative is far above that
        for p, w in zip(preds, want):
            assert np.allclose(list(p["probabilities"].values()), w, rtol=1e-5, atol=1e-7)
    r = client.post("/predict?top=2", data={"image": (io.BytesIO(datas[0]), "x.png")},
                    content_type="multipart/form-data")
    assert len(r.get_json()["top"]) == 2


@pytest.mark.parametrize("body, words", [
    ({"image": "not base64!"}, "not valid base64"),
    ({"image": 3}, "must be a base64 string"),
    ({"images": []}, "no image"),
    ({"picture": "x"}, "no image"),
])
def test_bad_json_is_400_naming_the_problem(client, body, words):
    r = client.post("/predict", json=body)
    assert r.status_code == 400 and words in r.get_json()["error"]


def test_formats_that_are_not_photo_formats_are_415(client):
    """EPS (Pillow would run Ghostscript), ICO, PPM...: refused from the header."""
    for fmt in ("ICO", "PPM", "TGA"):
        buf = io.BytesIO()
        Image.new("RGB", (16, 16)).save(buf, fmt)
        r = client.post("/predict", data=buf.getvalue(), content_type="image/x-whatever")
        assert r.status_code == 415 and fmt in r.get_json()["error"], fmt
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\n"
    r = client.post("/predict", data=eps, content_type="application/octet-stream")
    assert r.status_code == 415 and "EPS" in r.get_json()["error"]


@pytest.mark.parametrize("fmt, mode", [("JPEG", "RGB"), ("JPEG", "CMYK"), ("PNG", "RGBA"),
                                       ("PNG", "P"), ("GIF", "P"), ("WEBP", "RGB"),
                                       ("BMP", "RGB"), ("TIFF", "RGB"), ("TIFF", "F")])
def test_photo_formats_and_modes_predict_as_the_tutorial_s_load_img(client, model, fmt, mode):
    """Nearest-neighbour resize first, colour conversion after: the same pixels as
    load_img's convert-then-resize (sampling commutes with pixel-wise maps), so the
    same probabilities as the tutorial's pipeline, to the last bit of the model's."""
    rgb = np.random.default_rng(9).integers(0, 256, (23, 37, 3), np.uint8)
    img = Image.fromarray(rgb)
    if mode == "F":
        img = Image.fromarray(rgb[..., 0].astype(np.float32))
    elif mode != "RGB":
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    r = client.post("/predict", data=buf.getvalue(), content_type="application/octet-stream")
    assert r.status_code == 200, r.get_data(as_text=True)
    want = expected(model, buf.getvalue())
    assert np.allclose(list(r.get_json()["probabilities"].values()), want, rtol=1e-6, atol=0)


def test_exif_orientation_is_applied(client, model):
    """A phone photo stored sideways (orientation 6: turn 90 degrees clockwise to
    view) predicts as the upright picture; at the model's input size no resampling
    happens, so the answer is the upright image's exactly."""
    upright = np.random.default_rng(10).integers(0, 256, (16, 16, 3), np.uint8)
    stored = np.rot90(upright, k=1)             # what a sideways camera writes
    exif = Image.Exif()
    exif[0x0112] = 6
    buf, ref = io.BytesIO(), io.BytesIO()
    Image.fromarray(stored).save(buf, "PNG", exif=exif)
    Image.fromarray(upright).save(ref, "PNG")
    r = client.post("/predict", data=buf.getvalue(), content_type="image/png")
    got = list(r.get_json()["probabilities"].values())
    assert np.allclose(got, expected(model, ref.getvalue()), rtol=1e-6, atol=0)
    assert not np.allclose(got, expected(model, buf.getvalue()), rtol=1e-6, atol=0)


def test_a_full_queue_is_429_with_retry_after(model):
    app = create_app(model, max_batch_size=1, max_queue=1)
    batcher = app.extensions["aslnet"]["batcher"]
    gate, entered = threading.Event(), threading.Event()
    real = model.predict

    def held(x, **kw):
        entered.set()
        gate.wait(10)
        return real(x, **kw)
    try:
        batcher.start()
        time.sleep(0.5)                         # the warm-up, unheld
        model.predict = held
        client = app.test_client()
        first = threading.Thread(target=post_image, args=(client, png_bytes()))
        first.start()
        assert entered.wait(10)                 # the first image computes...
        batcher.submit([np.zeros((16, 16, 3), np.float32)])   # ...one waits in the queue
        r = post_image(client, png_bytes())
        assert r.status_code == 429 and r.headers["Retry-After"] == "1"
        assert "limit: 1" in r.get_json()["error"]
    finally:
        gate.set()
        del model.predict
    first.join(10)


def test_too_many_form_parts_names_that_limit(client):
    data = {f"f{i}": "x" for i in range(1100)}
    data["image"] = (io.BytesIO(png_bytes()), "x.png")
    r = client.post("/predict", data=data, content_type="multipart/form-data")
    assert r.status_code == 413 and "parts" in r.get_json()["error"]


def test_model_ready_metrics_openapi(client):
    info = client.get("/model").get_json()
    assert info["classes"] == ["a", "b", "c"] and info["input_size"] == [16, 16]
    assert info["dtype_policy"] == "float32" and info["aslnet_version"] == aslnet.__version__
    for _ in range(50):                         # the warm-up runs in the batch thread
        if client.get("/ready").status_code == 200:
            break
        time.sleep(0.1)
    assert client.get("/ready").get_json() == {"status": "ready"}
    post_image(client, png_bytes())
    post_image(client, b"junk")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'route="/predict",status="200"} 1' in text
    assert 'route="/predict",status="400"} 1' in text
    assert "# TYPE aslnet_request_seconds histogram" in text
    assert "aslnet_batch_size_count" in text and "aslnet_images_predicted_total" in text
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.") and "/predict" in spec["paths"]
    json.dumps(spec)


def test_class_names_travel_with_the_model(tmp_path):
    """fit on a directory iterator records the folder names; save/load keep them (an
    h5 attribute Keras ignores); the app and `aslnet predict` use them."""
    import h5py
    from aslnet.preprocessing.image import ImageDataGenerator
    for k, name in enumerate(["cat", "dog", "eel"]):
        d = tmp_path / "data" / name
        d.mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((16, 16, 3), 40 * k + i, np.uint8)).save(d / f"{i}.png")
    flow = ImageDataGenerator(preprocessing_function=preprocess_input).flow_from_directory(
        str(tmp_path / "data"), target_size=(16, 16), batch_size=6)
    m = tiny_model()
    m.compile(optimizer="sgd", loss="categorical_crossentropy")
    m.fit(flow, epochs=1, verbose=0)
    assert m.class_names == ["cat", "dog", "eel"]
    path = tmp_path / "m.h5"
    m.save(path)
    with h5py.File(path) as f:
        assert json.loads(f.attrs["class_names"]) == ["cat", "dog", "eel"]
    loaded = aslnet.models.load_model(path, compile=False)
    assert loaded.class_names == ["cat", "dog", "eel"]
    out = post_image(create_app(str(path)).test_client(), png_bytes()).get_json()
    assert list(out["probabilities"]) == ["cat", "dog", "eel"]
