"""Counters and histograms in Prometheus's text format (no dependency).

Each process counts its own requests: under gunicorn with several workers,
each scrape sees the worker that answered it (label ``pid``); run one worker
(the default: batching works best in one process) or sum in Prometheus.
"""
import os
import threading

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class _Histogram:
    def __init__(self, buckets):
        self.buckets, self.counts, self.sum, self.count = buckets, [0] * len(buckets), 0.0, 0

    def observe(self, v):
        for i, b in enumerate(self.buckets):
            if v <= b:
                self.counts[i] += 1
        self.sum += v
        self.count += 1

    def lines(self, name, labels):
        out = [f'{name}_bucket{{{labels},le="{b}"}} {c}' for b, c in zip(self.buckets,
                                                                        self.counts)]
        out.append(f'{name}_bucket{{{labels},le="+Inf"}} {self.count}')
        out.append(f"{name}_sum{{{labels}}} {self.sum:.6f}")
        out.append(f"{name}_count{{{labels}}} {self.count}")
        return out


class Metrics:
    def __init__(self):
        self._lock = threading.Lock()
        self.requests = {}              # (route, status) -> count
        self.images = 0
        self.latency = _Histogram(LATENCY_BUCKETS)
        self.batch_size = _Histogram(BATCH_BUCKETS)
        self.batch_seconds = _Histogram(LATENCY_BUCKETS)

    def request(self, route, status, seconds):
        with self._lock:
            key = (route, int(status))
            self.requests[key] = self.requests.get(key, 0) + 1
            if route == "/predict":
                self.latency.observe(seconds)

    def batch(self, size, seconds):
        with self._lock:
            self.images += size
            self.batch_size.observe(size)
            self.batch_seconds.observe(seconds)

    def text(self, queued=0):
        pid = f'pid="{os.getpid()}"'
        with self._lock:
            out = ["# HELP aslnet_requests_total HTTP requests by route and status.",
                   "# TYPE aslnet_requests_total counter"]
            out += [f'aslnet_requests_total{{{pid},route="{r}",status="{s}"}} {n}'
                    for (r, s), n in sorted(self.requests.items())]
            out += ["# HELP aslnet_request_errors_total Requests answered with status >= 400.",
                    "# TYPE aslnet_request_errors_total counter",
                    f"aslnet_request_errors_total{{{pid}}} "
                    f"{sum(n for (_, s), n in self.requests.items() if s >= 400)}",
                    "# HELP aslnet_images_predicted_total Images through the model.",
                    "# TYPE aslnet_images_predicted_total counter",
                    f"aslnet_images_predicted_total{{{pid}}} {self.images}",
                    "# HELP aslnet_queue_images Images waiting for a batch.",
                    "# TYPE aslnet_queue_images gauge",
                    f"aslnet_queue_images{{{pid}}} {queued}",
                    "# HELP aslnet_request_seconds POST /predict latency.",
                    "# TYPE aslnet_request_seconds histogram"]
            out += self.latency.lines("aslnet_request_seconds", pid)
            out += ["# HELP aslnet_batch_size Images per predict call.",
                    "# TYPE aslnet_batch_size histogram"]
            out += self.batch_size.lines("aslnet_batch_size", pid)
            out += ["# HELP aslnet_batch_seconds Seconds per predict call.",
                    "# TYPE aslnet_batch_seconds histogram"]
            out += self.batch_seconds.lines("aslnet_batch_seconds", pid)
        return "\n".join(out) + "\n"
