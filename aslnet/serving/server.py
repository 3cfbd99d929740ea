"""``aslnet serve``: the app on gunicorn (gthread workers), or on werkzeug's
development server with ``dev=True``.

Production settings, each an option of ``serve``:

* the model loads once, in gunicorn's master, before the workers fork
  (loading builds no C network and starts no OpenMP thread, so forking is
  safe; each worker builds its network in its warm-up predict);
* compute threads per worker = the CPUs this process may use (OMP_NUM_THREADS,
  the affinity mask, the cgroup's CPU quota) divided by the workers, so
  workers' thread pools do not fight over the cores;
* ``threads`` connections are served at once per worker (each waits for its
  batch), at most ``max_connections`` are open per worker (more wait in the
  listen backlog); idle keep-alive connections close after ``keepalive`` s;
* a request must arrive whole within ``request_timeout`` s (DeadlineWorker):
  a client sending a byte a second holds one thread that long, never the
  worker; behind a buffering reverse proxy (nginx) it never reaches us;
* SIGTERM stops accepting and lets requests in flight finish (up to
  ``graceful_timeout`` s); Flask's debug mode is never on.
"""
import math
import os
import socket
import sys
import threading
import time

__all__ = ["serve", "available_cpus", "DeadlineWorker"]


def available_cpus():
    """The CPUs this process may use: OMP_NUM_THREADS when set, else the
    affinity mask capped by the cgroup (v2) CPU quota."""
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


try:
    from gunicorn.workers.gthread import ThreadWorker as _ThreadWorker
except ImportError:                         # only serve() needs gunicorn
    _ThreadWorker = object


class DeadlineWorker(_ThreadWorker):
    """gunicorn's gthread worker, plus a deadline per request: a connection
    whose request is still being read (or answered) ``request_timeout`` seconds
    after it became readable is shut down, so a trickling client frees its
    thread."""
    request_timeout = 15.0                  # set by serve() before the fork

    def init_process(self):
        self._deadlines, self._deadline_lock = {}, threading.Lock()
        threading.Thread(target=self._watch, name="aslnet-deadlines", daemon=True).start()
        super().init_process()

    def handle(self, conn):
        key = id(conn)
        with self._deadline_lock:
            self._deadlines[key] = (conn, time.monotonic() + self.request_timeout)
        try:
            return super().handle(conn)
        finally:
            with self._deadline_lock:
                self._deadlines.pop(key, None)

    def _watch(self):
        while True:
            time.sleep(0.25)
            now = time.monotonic()
            with self._deadline_lock:
                late = [(k, c) for k, (c, d) in self._deadlines.items() if now > d]
                for k, _ in late:
                    del self._deadlines[k]
            for _, conn in late:
                self.log.warning("request from %s not done within %.0f s: connection closed",
                                 conn.client, self.request_timeout)
                try:
                    conn.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


_OPTIONAL = {"control_socket_disable"}     # gunicorn >= 24 only


def _gunicorn_app(make_app, options, on_ready):
    from gunicorn.app.base import BaseApplication

    class Server(BaseApplication):
        def load_config(self):
            for k, v in options.items():
                if k in self.cfg.settings or k not in _OPTIONAL:
                    self.cfg.set(k, v)

        def load(self):
            return make_app()

    options["when_ready"] = on_ready
    return Server()


def _post_worker_init(worker):
    """In each worker, after the fork: start the batch thread (its warm-up
    builds this worker's network) before taking requests."""
    ext = getattr(worker.wsgi, "extensions", {}).get("aslnet")
    if ext is not None:
        ext["batcher"].start()


def serve(make_app, host="127.0.0.1", port=5000, workers=1, threads=32, compute_threads=None,
          max_connections=256, request_timeout=15.0, graceful_timeout=30.0, keepalive=5.0,
          forwarded_allow_ips=None, access_log=False, dev=False, announce=None):
    """Run ``make_app()`` (a Flask app factory) until SIGTERM/SIGINT."""
    import aslnet
    if compute_threads is None:
        compute_threads = max(1, available_cpus() // workers)
    aslnet.set_num_threads(compute_threads)        # inherited by the workers
    announce = announce or (lambda line: print(line, file=sys.stderr, flush=True))
    if dev:
        from werkzeug.serving import make_server
        app = make_app()
        srv = make_server(host, port, app, threaded=True)
        announce(f"aslnet serve: development server (Flask's, threads without limit) at "
                 f"http://{_url_host(host)}:{srv.port}/ ; not for production: leave out --dev")
        try:
            srv.serve_forever()
        except KeyboardInterrupt:
            pass
        return 0
    try:
        import gunicorn  # noqa: F401
    except ImportError as e:
        raise ImportError("aslnet serve needs gunicorn: pip install 'aslnet[serve]' "
                          "(or --dev for Flask's development server)") from e
    if threads >= max_connections:
        raise ValueError(f"--max-connections ({max_connections}) must exceed --threads "
                         f"({threads})")
    DeadlineWorker.request_timeout = float(request_timeout)

    def on_ready(arbiter):
        for listener in arbiter.LISTENERS:
            h, p = listener.sock.getsockname()[:2]
            announce(f"aslnet serve: http://{_url_host(h)}:{p}/ ({workers} worker"
                     f"{'s' if workers > 1 else ''} x {threads} threads, {compute_threads} "
                     f"compute thread{'s' if compute_threads > 1 else ''} each)")

    options = {
        "bind": [f"{_url_host(host)}:{port}"], "workers": workers, "threads": threads,
        "worker_class": "aslnet.serving.server.DeadlineWorker",
        "worker_connections": max_connections, "keepalive": math.ceil(keepalive),
        "timeout": max(30, int(request_timeout) + 15),     # a stuck worker is restarted
        "graceful_timeout": math.ceil(graceful_timeout), "preload_app": True,
        "post_worker_init": _post_worker_init, "proc_name": "aslnet-serve",
        "accesslog": "-" if access_log else None, "loglevel": "info",
        "control_socket_disable": True,     # no $HOME/.gunicorn/gunicorn.ctl
    }
    if forwarded_allow_ips:
        options["forwarded_allow_ips"] = forwarded_allow_ips
    _gunicorn_app(make_app, options, on_ready).run()
    return 0


def _url_host(host):
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
