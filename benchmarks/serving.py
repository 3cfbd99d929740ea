"""Load test of ``aslnet serve`` against in-process decode + predict (issue 16).

    python -m benchmarks.serving                         # starts `aslnet serve` itself
    python -m benchmarks.serving --url http://127.0.0.1:5000   # a server already running
    python -m benchmarks.serving --clients 1,4,16 --seconds 10 --repeats 3

For each client count, that many threads post the digit JPEGs (multipart field
``image``, one keep-alive connection each, round robin over the images) for
``--seconds`` and report requests/s, p50/p95/p99 latency and errors (any
status but 200, or a failed connection); the median of ``--repeats`` runs.
The reference: the same images decoded and predicted in this process
(``aslnet.serving.decode_image`` + ``predict``) at batch 1 and batch 16.
Everything is on loopback, bounded in time; the load generator shares the
machine's cores with the server, as a client on the same host would.

The model: ``--model`` (an .h5) or, by default, the pretrained MobileNet with a
new 10-class head (what the tutorial serves; the weights' values do not
change the speed), saved to a temporary file.
"""
import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

import numpy as np

DIGITS = Path(os.environ.get("ASLNET_SHARED", "../shared")) / "data" / "sign-language-digits"


def digit_images(folder, n):
    files = sorted(p for p in Path(folder).glob("*/*") if p.suffix.lower() in (".jpg", ".jpeg"))
    small = [p for p in files if p.stat().st_size < 200_000][::max(1, len(files) // n)][:n]
    if not small:
        raise SystemExit(f"no JPEG images under {folder}: give --images")
    return [p.read_bytes() for p in small]


def multipart(data):
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
            f"filename=\"digit.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").encode() + data + \
        f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def in_process(model_path, images, seconds):
    """Images/s of decode + preprocess + predict here, at batch 1 and 16."""
    import aslnet
    from aslnet.applications.mobilenet import preprocess_input
    from aslnet.serving import decode_image
    model = aslnet.models.load_model(model_path, compile=False)
    size = model.input_shape[1:3]
    out = {}
    for batch in (1, 16):
        model.predict(np.zeros((batch,) + model.input_shape[1:], np.float32), verbose=0)
        n, i, t0 = 0, 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            xs = []
            for _ in range(batch):
                xs.append(preprocess_input(decode_image(images[i % len(images)], size)))
                i += 1
            model.predict(np.stack(xs), batch_size=batch, verbose=0)
            n += batch
        out[batch] = n / (time.perf_counter() - t0)
    return out


def cpu_seconds(pid):
    """User + system CPU seconds of process ``pid`` and its children (gunicorn's
    workers): a figure the other loads of a shared machine disturb less than
    wall-clock rates."""
    tick = os.sysconf("SC_CLK_TCK")
    pids, total = [pid], 0.0
    try:
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def load(url, images, clients, seconds):
    """(requests/s, [latency s], errors) of ``clients`` closed-loop clients."""
    u = urllib.parse.urlsplit(url)
    bodies = [multipart(d) for d in images]
    lat, errors, lock = [], [0], threading.Lock()
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def client(k):
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        mine, bad, i = [], 0, k
        start.wait()
        while time.perf_counter() < stop_at[0]:
            body, ctype = bodies[i % len(bodies)]
            i += clients
            t = time.perf_counter()
            try:
                conn.request("POST", "/predict", body=body, headers={"Content-Type": ctype})
                r = conn.getresponse()
                r.read()
                ok = r.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
            if ok:
                mine.append(time.perf_counter() - t)
            else:
                bad += 1
        conn.close()
        with lock:
            lat.extend(mine)
            errors[0] += bad
    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    stop_at[0] = t0 + seconds
    start.wait()
    for t in threads:
        t.join(seconds + 60)
    elapsed = time.perf_counter() - t0
    return len(lat) / elapsed, lat, errors[0]


def start_server(model_path, extra):
    cmd = [sys.executable, "-m", "aslnet", "serve", model_path, "--port", "0"] + extra
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 120
    for line in proc.stderr:
        m = re.search(r"aslnet serve: .*?(http://[\d.]+:\d+)/", line)
        if m:
            url = m.group(1)
            threading.Thread(target=proc.stderr.read, daemon=True).start()   # drain
            break
        if time.monotonic() > deadline:
            break
    else:
        raise SystemExit("aslnet serve did not start")
    while time.monotonic() < deadline:                  # wait for the warm-up
        try:
            c = http.client.HTTPConnection("127.0.0.1", urllib.parse.urlsplit(url).port,
                                           timeout=5)
            c.request("GET", "/ready")
            if c.getresponse().status == 200:
                break
        except OSError:
            pass
        time.sleep(0.2)
    return proc, url


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="a running server (else `aslnet serve` is started)")
    ap.add_argument("--model", help="an .h5 model (default: MobileNet + 10-class head)")
    ap.add_argument("--images", default=str(DIGITS))
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--server-args", default="", help="extra `aslnet serve` options")
    ap.add_argument("--server-pid", type=int, help="with --url: the server's process id, "
                    "for its CPU time per request")
    ap.add_argument("--json", help="write the figures here too")
    args = ap.parse_args(argv)
    if not 0 < args.seconds <= 120 or not 1 <= args.repeats <= 9:
        raise SystemExit("--seconds in (0, 120], --repeats in [1, 9]")
    clients = [int(c) for c in args.clients.split(",")]
    if not all(1 <= c <= 256 for c in clients):
        raise SystemExit("--clients: 1 to 256 each")
    images = digit_images(args.images, 64)
    tmp = None
    model_path = args.model
    if model_path is None:
        import aslnet
        tmp = tempfile.mkdtemp(prefix="aslnet-bench-serving-")
        model_path = os.path.join(tmp, "digit_model.h5")
        aslnet.set_random_seed(0)
        aslnet.load_pretrained("mobilenet", num_classes=10).save(model_path)
    proc = None
    try:
        ref = in_process(model_path, images, min(args.seconds, 10))
        print(f"in process (decode + predict): batch 1 {ref[1]:.1f} images/s, "
              f"batch 16 {ref[16]:.1f} images/s")
        if args.url:
            url, pid = args.url.rstrip("/"), args.server_pid
        else:
            proc, url = start_server(model_path, args.server_args.split())
            pid = proc.pid
        rows = []
        print(f"{'clients':>7} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
              f"{'errors':>6} {'% of batch-16':>13} {'server CPU ms/req':>17}")
        for c in clients:
            runs = []
            for _ in range(args.repeats):
                cpu0 = cpu_seconds(pid) if pid else 0.0
                rps, lat, err = load(url, images, c, args.seconds)
                cpu = (cpu_seconds(pid) - cpu0) * 1000 / max(1, len(lat)) if pid else \
                    float("nan")
                q = np.percentile(lat, [50, 95, 99]) * 1000 if lat else [float("nan")] * 3
                runs.append((rps, *q, err, cpu))
            rps, p50, p95, p99 = (statistics.median(r[i] for r in runs) for i in range(4))
            cpu = statistics.median(r[5] for r in runs)
            err = sum(r[4] for r in runs)
            rows.append(dict(clients=c, rps=rps, p50_ms=p50, p95_ms=p95, p99_ms=p99,
                             errors=err, server_cpu_ms_per_request=cpu, runs=runs))
            print(f"{c:>7} {rps:>7.1f} {p50:>7.1f} {p95:>7.1f} {p99:>7.1f} {err:>6d} "
                  f"{100 * rps / ref[16]:>12.0f}% {cpu:>17.1f}")
        if args.json:
            Path(args.json).write_text(json.dumps(dict(
                in_process=ref, rows=rows, url=url, seconds=args.seconds,
                repeats=args.repeats, server_args=args.server_args), indent=1))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        if tmp:
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
