"""`aslnet serve` as a user runs it: gunicorn in a subprocess on 127.0.0.1, an
ephemeral port, stopped by the test (SIGTERM) and by a timeout in any case."""
import http.client
import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("flask")
pytest.importorskip("gunicorn")

from PIL import Image  # noqa: E402

from .test_app import png_bytes, tiny_model  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Server:
    def __init__(self, model_path, *options):
        env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aslnet", "serve", str(model_path), "--port", "0",
             *options], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
        self.log = []
        deadline = time.monotonic() + 60
        for line in self.proc.stderr:
            self.log.append(line)
            m = re.search(r"aslnet serve: http://127\.0\.0\.1:(\d+)/", line)
            if m:
                self.port = int(m.group(1))
                break
            if time.monotonic() > deadline:
                break
        else:
            raise AssertionError("server did not start:\n" + "".join(self.log))
        threading.Thread(target=self._drain, daemon=True).start()
        while time.monotonic() < deadline:          # the workers' warm-up
            try:
                if self.request("GET", "/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("server never ready:\n" + "".join(self.log))

    def _drain(self):
        for line in self.proc.stderr:
            self.log.append(line)

    def request(self, method, path, body=None, headers=None, timeout=30):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def predict(self, data):
        return self.request("POST", "/predict", data, {"Content-Type": "image/png"})

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("serve") / "m.h5"
    tiny_model().save(path)
    return path


@pytest.fixture
def server(model_path):
    s = Server(model_path, "--request-timeout", "2")
    yield s
    assert s.stop() == 0


def test_production_server_answers(server):
    status, body = server.predict(png_bytes())
    assert status == 200 and b'"probabilities"' in body
    assert not any("development server" in line for line in server.log)
    assert server.request("GET", "/nope")[0] == 404


def test_a_slow_client_holds_no_one_up(server):
    """A client sending a byte every 0.1 s: others are answered meanwhile, and the
    server closes it at --request-timeout (2 s here)."""
    slow = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n" \
           b"Content-Length: 100000\r\n\r\n"
    closed_after = [None]

    def trickle():
        t0 = time.monotonic()
        try:
            for byte in head + bytes(1000):
                slow.send(bytes([byte]))
                time.sleep(0.1)
        except OSError:
            pass
        closed_after[0] = time.monotonic() - t0
    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    for _ in range(5):
        assert server.predict(png_bytes())[0] == 200
    assert time.monotonic() - t0 < 2
    t.join(15)
    # closed at the deadline (2 s; the watchdog looks every 0.25 s), not after the
    # 100 s the trickle would take
    assert closed_after[0] is not None and closed_after[0] < 6
    slow.close()


def test_sigterm_lets_a_request_in_flight_finish(model_path):
    server = Server(model_path)
    data = png_bytes()
    conn = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    conn.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                 b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(data) + data[:100])
    time.sleep(0.5)
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    conn.sendall(data[100:])
    answer = b""
    while chunk := conn.recv(65536):
        answer += chunk
    conn.close()
    assert answer.startswith(b"HTTP/1.1 200") and b"probabilities" in answer
    assert server.proc.wait(30) == 0


def _peak_memory(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1)) * 1024


@pytest.fixture(scope="module")
def patient_server(model_path):
    """No deadline to speak of: decoding 49 MP takes seconds on a loaded machine."""
    s = Server(model_path, "--request-timeout", "300")
    s.predict(png_bytes())
    text = s.request("GET", "/metrics")[1].decode()
    s.worker = int(re.search(r'pid="(\d+)"', text).group(1))
    s.baseline = _peak_memory(s.worker)         # after the warm-up and a request
    yield s
    assert s.stop() == 0


@pytest.mark.parametrize("mode", ["I;16", "I", "RGBA"])
def test_memory_per_request_is_bounded_for_every_pixel_format(patient_server, mode):
    """A 7000 x 7000 image (49 MP, under the 50 MP limit) in a small file: the worker's
    peak memory (since its first request) grows by at most the decoded image in its
    own format (<= 4 bytes a pixel) and some slack, never by full-size float or RGB
    copies (a 16-bit one used to cost ~1.2 GB)."""
    side = 7000
    if mode == "RGBA":
        img = Image.new("RGBA", (side, side), (10, 20, 30, 255))
    else:
        img = Image.new(mode, (side, side), 1000)
    buf = io.BytesIO()
    if mode == "I":
        img.save(buf, "TIFF", compression="tiff_deflate")
    else:
        img.save(buf, "PNG")
    del img
    assert len(buf.getvalue()) < 8 << 20
    server = patient_server
    status, body = server.request("POST", "/predict", buf.getvalue(),
                                  {"Content-Type": "application/octet-stream"}, timeout=300)
    assert status == 200, body
    grown = _peak_memory(server.worker) - server.baseline
    print(f"{mode}: peak memory +{grown / 2**20:.0f} MB")
    # the decoded image (<= 4 bytes a pixel: 196 MB), at most one more image of the same
    # size while Pillow resizes it in its own mode (its output and working rows), + 96 MB
    # for the decoder's buffers and the allocator's slack (measured: 94 / 234 / 250-377
    # MB, the last under a load of 10): 488 MB; the old path's float copies (a float32 RGB
    # copy alone is 588 MB, on top of the decoded image) cannot fit under it
    assert grown < 2 * 4 * side * side + (96 << 20), f"{grown / 2**20:.0f} MB"


def test_several_workers_share_the_cores(model_path):
    server = Server(model_path, "--workers", "2")
    try:
        assert any("2 workers" in line for line in server.log)
        cpus = len(os.sched_getaffinity(0))
        if "OMP_NUM_THREADS" not in os.environ:
            want = max(1, cpus // 2)
            assert any(f"{want} compute thread" in line for line in server.log), server.log
        for _ in range(4):
            assert server.predict(png_bytes())[0] == 200
    finally:
        assert server.stop() == 0
