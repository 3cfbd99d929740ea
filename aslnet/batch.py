"""Batch prediction and feature extraction over many image files on Dask.

    from aslnet.batch import predict_files, read_results
    summary = predict_files("digit_model.h5", "photos/**/*.jpg", "predictions/")
    table = read_results("predictions/")          # a pyarrow Table, input order

The files are split into partitions of ``partition_size`` (sorted paths, so a
rerun makes the same partitions); each partition is one Dask task that decodes
its files as ``aslnet predict`` does (the model's input size and colour mode,
MobileNet's ``preprocess_input``), predicts in batches of ``batch_size`` and
writes ``part-NNNNN.parquet`` (or ``.csv``) atomically (a temporary file, then
a rename).  A rerun skips the partitions already written (resumable); a file
that cannot be decoded gets a row with its ``error`` and no prediction; a task
whose worker dies is rerun by Dask on another one, and since each partition is
one file replaced atomically the output never holds a file twice.

Each worker thread loads the model once (a cache keyed by the model's path and
SHA-256).  Workers write the output and read the model and images themselves:
on a cluster, all three must be on a file system every worker sees.
"""
import dataclasses
import glob as _glob
import hashlib
import json
import os
import threading
import time
import uuid
from pathlib import Path

import numpy as np

__all__ = ["predict_files", "read_results", "BatchSummary"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
_MANIFEST = "_aslnet_batch.json"
_FORMATS = ("parquet", "csv")


@dataclasses.dataclass
class BatchSummary:
    """What a ``predict_files`` run did."""
    output: str
    files: int              # image files in the job
    partitions: int         # partitions in the job
    skipped: int            # partitions already written by an earlier run
    written: int            # partitions written by this run
    errors: int             # files in the output that could not be used (error column)
    seconds: float


# -- the file list, the job's identity ------------------------------------------------
def list_files(paths_or_glob):
    """Sorted, de-duplicated file paths: a glob pattern (``**`` recursive), a folder
    (every image file under it), a file, or a list of these."""
    items = [paths_or_glob] if isinstance(paths_or_glob, (str, os.PathLike)) \
        else list(paths_or_glob)
    files = []
    for item in items:
        text = os.fspath(item)
        if os.path.isdir(text):
            files += [os.path.join(d, f) for d, _, names in os.walk(text) for f in names
                      if f.lower().endswith(IMAGE_EXTENSIONS)]
        elif _glob.has_magic(text):
            files += [p for p in _glob.glob(text, recursive=True) if os.path.isfile(p)]
        else:
            files.append(text)    # kept even if missing: its row reports the error
    files = sorted(set(os.path.abspath(f) for f in files))
    if not files:
        raise ValueError(f"no image files in {paths_or_glob!r}: give files, a folder or a "
                         "glob pattern such as 'photos/**/*.jpg'")
    return files


def _sha256(path):
    from .utils.file_digest import sha256_stream
    with open(path, "rb") as f:
        return sha256_stream(f)[1].hex()


def _check_manifest(output, manifest):
    """Write the job's settings, or check that an earlier run's match (a rerun
    with other settings would mix two jobs' partitions)."""
    path = Path(output) / _MANIFEST
    if path.exists():
        old = json.loads(path.read_text())
        diff = [k for k in manifest if old.get(k) != manifest[k]]
        if diff:
            raise ValueError(f"{output} holds the output of another job (its {', '.join(diff)} "
                             "differ): give a new output folder, or delete this one to start "
                             "over")
        return
    _write_atomically(path, lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=1)))


def _write_atomically(path, write):
    tmp = f"{path}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# -- on the worker ----------------------------------------------------------------------
_local = threading.local()   # per worker thread: {(path, sha256, features): (model, size, mode)}


def _model(model_path, sha256, features):
    """The worker thread's model (and feature extractor), loaded once per model file."""
    cache = getattr(_local, "models", None)
    if cache is None:
        cache = _local.models = {}
    key = (model_path, sha256, features)
    if key not in cache:
        from ._image_files import _color_mode
        from .models import Model, load_model
        if _sha256(model_path) != sha256:
            raise ValueError(f"{model_path} changed while the job ran: rerun it (finished "
                             "partitions are kept only if the model is the same)")
        model = load_model(model_path, compile=False)
        size, mode = model.input_shape[1:3], _color_mode(model)
        if features:
            model = Model(model.inputs, _head_input(model))
        cache.clear()              # one model per thread: a new job frees the last one
        cache[key] = (model, size, mode)
    return cache[key]


def _head_input(model):
    """The input of the model's head (its last layer with weights): the pooled
    features a new head would be trained on."""
    layers = model.layers
    for i in range(len(layers) - 1, 0, -1):
        if layers[i].weights:
            if len(layers[i - 1].output.shape) != 2:
                raise ValueError(f"features=True takes the input of the head "
                                 f"{layers[i].name!r}, which is not pooled (shape "
                                 f"{layers[i - 1].output.shape}): give a model whose head is "
                                 "a Dense layer after pooling")
            return layers[i - 1].output
    raise ValueError("features=True: the model has no layer with weights to call its head")


def _error_text(path, e):
    from ._image_files import _image_error
    return _image_error(path, e)[len(str(path)) + 2:]


def _run_partition(model_path, sha256, paths, out_file, features, batch_size, top, fmt):
    """Decode, predict and write one partition; returns (files, errors)."""
    from .applications.mobilenet import preprocess_input
    from ._image_files import _read_image
    model, size, mode = _model(model_path, sha256, features)
    xs, good, errors = [], [], [None] * len(paths)
    for i, path in enumerate(paths):
        try:
            xs.append(preprocess_input(_read_image(path, size, mode)))
            good.append(i)
        except Exception as e:     # Pillow raises many kinds on malformed files
            errors[i] = _error_text(path, e)
    out = model.predict(np.stack(xs), batch_size=batch_size, verbose=0) if xs else None
    table = _table(paths, good, errors, out, features, top, fmt)
    _write_atomically(out_file, lambda tmp: _write_table(table, tmp, fmt))
    return len(paths), sum(e is not None for e in errors)


def _table(paths, good, errors, out, features, top, fmt):
    """The partition's rows: path, error, then the predictions or features (null on
    error rows).  Parquet keeps vectors as list columns; CSV as one column each."""
    import pyarrow as pa
    n = len(paths)
    cols = {"path": pa.array(paths, pa.string()), "error": pa.array(errors, pa.string())}
    mask = np.ones(n, bool)
    mask[good] = False

    def column(values, dtype):                 # values for the good rows, nulls elsewhere
        full = np.zeros((n,) + values.shape[1:], values.dtype)
        full[good] = values
        if full.ndim == 1:
            return {"": pa.array(full, dtype, mask=mask)}
        if fmt == "csv":
            return {str(j): pa.array(full[:, j], dtype, mask=mask)
                    for j in range(full.shape[1])}
        # a list column, not a fixed-size one: pyarrow 25 cannot read back a Parquet
        # fixed-size list with a null row ("Expected all lists to be of size=3")
        offsets = pa.array(np.arange(n + 1, dtype=np.int32) * full.shape[1], pa.int32())
        return {"": pa.ListArray.from_arrays(offsets, pa.array(full.ravel(), dtype),
                                             mask=pa.array(mask))}

    def add(name, values, dtype):
        for suffix, arr in column(values, dtype).items():
            cols[f"{name}{suffix}"] = arr

    empty = np.zeros((0, 1), np.float32)
    out = empty if out is None else np.asarray(out, np.float32)
    if features:
        add("features_" if fmt == "csv" else "features", out, pa.float32())
        return pa.table(cols)
    width = out.shape[1] if out.size else 1
    add("index", out.argmax(1).astype(np.int64) if out.size else np.zeros(0, np.int64),
        pa.int64())
    add("probability", out.max(1) if out.size else np.zeros(0, np.float32), pa.float32())
    if top:
        k = min(top, width)
        order = np.argsort(-out, axis=1, kind="stable")[:, :k] if out.size \
            else np.zeros((0, k), np.int64)
        add("top_indices_" if fmt == "csv" else "top_indices", order.astype(np.int64),
            pa.int64())
        add("top_probabilities_" if fmt == "csv" else "top_probabilities",
            np.take_along_axis(out, order, 1) if out.size else np.zeros((0, k), np.float32),
            pa.float32())
    else:
        add("p" if fmt == "csv" else "probabilities",
            out if out.size else np.zeros((0, width), np.float32), pa.float32())
    return pa.table(cols)


def _write_table(table, path, fmt):
    if fmt == "csv":
        import pyarrow.csv as pcsv
        pcsv.write_csv(table, path)
    else:
        import pyarrow.parquet as pq
        pq.write_table(table, path)


# -- the client -------------------------------------------------------------------------
def _local_cluster(n_workers, threads_per_worker):
    """A LocalCluster of processes, each running one partition at a time with
    ``threads_per_worker`` C-core threads, so that workers x threads fit the cores
    aslnet's default thread count sees (OMP_NUM_THREADS, affinity, cgroup quota)."""
    from distributed import Client, LocalCluster
    from .backend import default_num_threads
    threads = threads_per_worker or 1
    workers = n_workers or max(1, default_num_threads() // threads)
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address=":0",
                           env={"OMP_NUM_THREADS": str(threads)})
    return Client(cluster), cluster


def predict_files(model_path, paths_or_glob, output, client=None, features=False,
                  batch_size=32, partition_size=256, top=None, format=None,
                  n_workers=None, threads_per_worker=None, retries=3, verbose=1):
    """Predict (or extract pooled features of) many image files on Dask, writing
    one Parquet or CSV file per partition of ``partition_size`` files into the
    folder ``output``.

    client: a ``distributed.Client``, a scheduler address ("tcp://host:8786"), or
        None for a LocalCluster of ``n_workers`` processes x ``threads_per_worker``
        threads (default: one single-threaded worker per core).
    features: write the input of the model's head (the pooled features a new head
        trains on) instead of its predictions.
    top: write the ``top`` best classes (``top_indices``, ``top_probabilities``)
        instead of every class's probability.
    format: "parquet" (default) or "csv".
    verbose: 1 shows distributed's progress bar.

    Each row: ``path``, ``error`` (null, or why the file could not be used), then
    ``index`` (the best class), ``probability`` and ``probabilities`` (or the top
    columns; CSV spreads vectors over columns p0, p1, ...), or ``features``.
    Returns a ``BatchSummary``; a partition that still fails after ``retries``
    raises ``RuntimeError`` once the others are written (rerun to resume)."""
    t0 = time.perf_counter()
    try:
        import distributed  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError as e:
        raise ImportError(f"aslnet.batch runs on Dask and writes with pyarrow ({e}): "
                          'pip install "aslnet[dask]" (or "dask[distributed]" pyarrow)') from e
    fmt = (format or "parquet").lower()
    if fmt not in _FORMATS:
        raise ValueError(f"format must be one of {_FORMATS}, got {format!r}")
    for name, v in (("batch_size", batch_size), ("partition_size", partition_size)):
        if not (isinstance(v, (int, np.integer)) and v >= 1):
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    if top is not None and not (isinstance(top, (int, np.integer)) and top >= 1):
        raise ValueError(f"top must be None or an integer >= 1, got {top!r}")
    if features and top:
        raise ValueError("top selects classes of predictions: leave it out with features=True")
    model_path = os.path.abspath(model_path)
    if not os.path.isfile(model_path):
        raise FileNotFoundError(f"no model file {model_path}: give a model saved by "
                                "Model.save (.h5 or .keras)")
    files = list_files(paths_or_glob)
    os.makedirs(output, exist_ok=True)
    sha = _sha256(model_path)
    _check_manifest(output, {
        "model_sha256": sha, "features": bool(features), "top": top, "format": fmt,
        "partition_size": int(partition_size), "files": len(files),
        "files_sha256": hashlib.sha256("\n".join(files).encode()).hexdigest()})
    parts = [files[i:i + partition_size] for i in range(0, len(files), partition_size)]
    names = [os.path.join(os.path.abspath(output), f"part-{i:05d}.{fmt}")
             for i in range(len(parts))]
    todo = [i for i, name in enumerate(names) if not os.path.exists(name)]

    cluster = None
    if todo and (client is None or isinstance(client, str)):
        if client is None:
            client, cluster = _local_cluster(n_workers, threads_per_worker)
        else:
            from distributed import Client
            client = Client(client)
            cluster = client           # closed at the end, as the cluster we made
    done = set(range(len(parts))) - set(todo)
    errors = sum(_count_errors(names[i]) for i in sorted(done))
    failed = []
    try:
        if todo:
            futures = [client.submit(_run_partition, model_path, sha, parts[i], names[i],
                                     bool(features), int(batch_size), top, fmt,
                                     key=f"aslnet-predict-{sha[:12]}-{uuid.uuid4().hex[:8]}-{i}",
                                     retries=retries, pure=False) for i in todo]
            if verbose:
                from distributed import progress
                progress(futures, notebook=False)
            for i, f in zip(todo, futures):
                # result() waits, also for a partition whose finished result was lost
                # with a killed worker and is being recomputed (after a wait() it
                # would be neither finished nor failed: status "lost", no exception)
                try:
                    errors += f.result()[1]
                except Exception as e:        # its error, or KilledWorker past retries
                    failed.append((i, e))
            client.cancel(futures)     # release them before the cluster closes
            for p in os.listdir(output):   # left by workers killed while writing
                if p.startswith("part-") and p.endswith(".tmp"):
                    os.remove(os.path.join(output, p))
    finally:
        if cluster is not None:
            cluster.close()
            if client is not cluster:
                client.close()
    if failed:
        i, e = failed[0]
        raise RuntimeError(f"{len(failed)} of {len(parts)} partitions failed (partition {i}: "
                           f"{type(e).__name__}: {e}); the others are written in {output}: "
                           "rerun to resume") from e
    return BatchSummary(output=str(output), files=len(files), partitions=len(parts),
                        skipped=len(parts) - len(todo), written=len(todo), errors=errors,
                        seconds=time.perf_counter() - t0)


def _count_errors(path):
    """Rows of a finished partition with an error."""
    if path.endswith(".csv"):
        import pyarrow as pa
        import pyarrow.csv as pcsv
        col = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(
            include_columns=["error"], column_types={"error": pa.string()})).column("error")
    else:
        import pyarrow.parquet as pq
        col = pq.read_table(path, columns=["error"]).column("error")
    return len(col) - col.null_count


def read_results(output):
    """Every partition of ``output`` as one pyarrow Table, in the job's (sorted
    path) order."""
    import pyarrow as pa
    parts = sorted(p for p in os.listdir(output) if p.startswith("part-")
                   and p.endswith(tuple(f".{f}" for f in _FORMATS)))
    if not parts:
        raise FileNotFoundError(f"no partitions in {output}: run predict_files first")
    tables = []
    for p in parts:
        path = os.path.join(output, p)
        if p.endswith(".csv"):
            import pyarrow.csv as pcsv
            tables.append(pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(
                column_types={"path": pa.string(), "error": pa.string()})))
        else:
            import pyarrow.parquet as pq
            tables.append(pq.read_table(path))
    return pa.concat_tables(tables, promote_options="default")
