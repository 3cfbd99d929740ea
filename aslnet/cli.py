"""aslnet (or python -m aslnet): fine-tune and run MobileNet from the command line.

    aslnet sign-digits [--data DIR]   the whole tutorial: split, fine-tune, test
    aslnet split SRC DST              train/valid/test split (copies, seeded)
    aslnet train SPLIT_DIR            fine-tune MobileNet on SPLIT_DIR/{train,valid}
    aslnet evaluate MODEL DIR         accuracy + confusion matrix on DIR
    aslnet predict MODEL IMAGE...     class probabilities of single images
    aslnet predict MODEL GLOB --dask local --output DIR
                                      many images on Dask, to Parquet/CSV (resumable)
    aslnet classify IMAGE...          ImageNet top-5 with the pretrained MobileNet
    aslnet serve MODEL                web page + JSON API for a saved model (gunicorn)

Exit status: 0 done, 1 some input images could not be read (the others were
processed), 2 a usage or user error (one line on stderr; ASLNET_DEBUG=1 shows
the traceback).
"""
import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from ._image_files import _color_mode, _image_error, _read_image  # noqa: F401

DEFAULT_DATA = Path(os.environ.get("ASLNET_SHARED", "../shared")) / "data" / "sign-language-digits"


class _Timer:
    """Wall time of each phase, printed at the end."""

    def __init__(self):
        self.phases = []

    def __call__(self, name):
        timer = self

        class _Phase:
            def __enter__(self):
                self.t = time.perf_counter()

            def __exit__(self, *exc):
                timer.phases.append((name, time.perf_counter() - self.t))
        return _Phase()

    def report(self):
        print("\nWall time per phase:")
        for name, t in self.phases:
            print(f"  {name:<12s} {t:8.2f} s")
        print(f"  {'total':<12s} {sum(t for _, t in self.phases):8.2f} s")


def _generators(split_dir, batch_size):
    from .applications.mobilenet import preprocess_input
    from .preprocessing.image import ImageDataGenerator
    gen = ImageDataGenerator(preprocessing_function=preprocess_input)
    flow = lambda sub, shuffle: gen.flow_from_directory(  # noqa: E731
        directory=str(Path(split_dir) / sub), target_size=(224, 224), batch_size=batch_size,
        shuffle=shuffle)
    return flow("train", True), flow("valid", True), flow("test", False)


def confusion_matrix(y_true, y_pred, num_classes):
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (y_true, y_pred), 1)
    return m


def _print_confusion(m, names):
    width = max(4, *(len(n) for n in names))
    print("Confusion matrix (rows: true class, columns: predicted):")
    print(" " * (width + 1) + " ".join(f"{n:>{width}}" for n in names))
    for name, row in zip(names, m):
        print(f"{name:>{width}} " + " ".join(f"{v:>{width}d}" for v in row))


def _evaluate(model, batches, where):
    names = sorted(batches.class_indices, key=batches.class_indices.get)
    outputs = model.output_shape[-1]
    if len(names) != outputs:
        raise ValueError(f"{where} has {len(names)} class folders ({', '.join(names[:12])}"
                         f"{', ...' if len(names) > 12 else ''}), the model has {outputs} "
                         "outputs: give the folder that holds one subfolder per class")
    if batches.samples == 0:
        print(f"\nNo images in {where}: nothing to test.")
        return None
    batches.reset() if hasattr(batches, "reset") else None
    probs = model.predict(batches, verbose=0)
    y_pred = probs.argmax(1)
    y_true = np.asarray(batches.classes)
    m = confusion_matrix(y_true, y_pred, len(names))
    acc = float(np.mean(y_true == y_pred))
    print(f"\nTest accuracy: {acc:.4f} ({int(np.sum(y_true == y_pred))}/{len(y_true)})")
    _print_confusion(m, names)
    return acc


def _train(split_dir, args, timer):
    import aslnet
    from .optimizers import Adam
    if os.path.isdir(args.out):
        raise ValueError(f"--out {args.out} is a directory: give the model file's path")
    if args.recipe == "fine_tune" and (args.epochs is not None or
                                       args.learning_rate is not None):
        raise ValueError("--recipe fine_tune has its own schedule (20 head epochs at 1e-3, "
                         "then 8 at 2e-5; see Model.fine_tune): --epochs and "
                         "--learning-rate set the tutorial recipe")
    epochs = 10 if args.epochs is None else args.epochs
    learning_rate = 1e-4 if args.learning_rate is None else args.learning_rate
    if args.seed is not None:
        aslnet.set_random_seed(args.seed)
    aslnet.mixed_precision.set_global_policy(args.dtype_policy)
    with timer("load data"):
        train_batches, valid_batches, test_batches = _generators(split_dir, args.batch_size)
    with timer("build"):
        model = aslnet.load_pretrained("mobilenet", num_classes=train_batches.num_classes,
                                       weights_dir=args.weights)
        if args.verbose:
            model.summary()
    with timer("fit"):
        if args.recipe == "fine_tune":
            model.fine_tune(train_batches, validation_data=valid_batches,
                            verbose=args.verbose)
        else:
            model.compile(optimizer=Adam(learning_rate=learning_rate),
                          loss="categorical_crossentropy", metrics=["accuracy"])
            model.fit(x=train_batches, validation_data=valid_batches, epochs=epochs,
                      verbose=args.verbose)
    with timer("save"):                 # before testing: a failure there keeps the model
        model.save(args.out)
        print(f"Model saved to {args.out}")
    with timer("test"):
        acc = _evaluate(model, test_batches, Path(split_dir) / "test")
    return model, acc


def _cmd_sign_digits(args):
    from .utils.dataset import split_dataset
    timer = _Timer()
    split_dir = Path(args.workdir) / "split"
    with timer("split"):
        summary = split_dataset(args.data, split_dir, valid=args.valid, test=args.test,
                                seed=args.split_seed)
        print(f"Split {args.data} -> {split_dir}: {summary}")
    _train(split_dir, args, timer)
    timer.report()
    return 0


def _cmd_split(args):
    from .utils.dataset import split_dataset
    print(split_dataset(args.src, args.dst, valid=args.valid, test=args.test,
                        seed=args.split_seed))
    return 0


def _cmd_train(args):
    timer = _Timer()
    _train(args.split_dir, args, timer)
    timer.report()
    return 0




def _cmd_evaluate(args):
    from .applications.mobilenet import preprocess_input
    from .models import load_model
    from .preprocessing.image import ImageDataGenerator
    model = load_model(args.model, compile=False)
    batches = ImageDataGenerator(preprocessing_function=preprocess_input).flow_from_directory(
        args.directory, target_size=model.input_shape[1:3], batch_size=32, shuffle=False,
        color_mode=_color_mode(model))
    _evaluate(model, batches, args.directory)
    return 0






def _each_image(command, paths, read, failures):
    """(path, array) for each readable image; a line on stderr for the others (their
    paths appended to ``failures``)."""
    for path in paths:
        try:
            x = read(path)
        except Exception as e:      # Pillow raises many kinds on malformed files
            if os.environ.get("ASLNET_DEBUG"):
                raise
            failures.append(path)
            print(f"aslnet {command}: error: {_image_error(path, e)}", file=sys.stderr)
            continue
        yield path, x


def _cmd_predict_dask(args):
    from .batch import predict_files
    if not args.output:
        raise ValueError("--dask writes its results to a folder: give --output DIR")
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise ValueError('--dask needs Dask: pip install "aslnet[dask]"') from None
    s = predict_files(args.model, args.images, args.output,
                      client=None if args.dask == "local" else args.dask,
                      features=args.features, batch_size=args.batch_size,
                      partition_size=args.partition_size, top=args.top, format=args.format,
                      n_workers=args.workers, threads_per_worker=args.threads,
                      verbose=1 if sys.stderr.isatty() else 0)
    print(f"{s.files} files in {s.partitions} partitions ({s.skipped} already written) -> "
          f"{s.output}; {s.errors} unreadable (see the error column); {s.seconds:.1f} s")
    return 1 if s.errors else 0


def _cmd_predict(args):
    from .applications.mobilenet import preprocess_input
    if args.dask:
        return _cmd_predict_dask(args)
    if args.output or args.features or args.top:
        raise ValueError("--output, --features and --top go with --dask SCHEDULER|local")
    from .models import load_model
    model = load_model(args.model, compile=False)
    size, mode = model.input_shape[1:3], _color_mode(model)
    names = getattr(model, "class_names", None)     # saved by fit on a directory
    failures = []
    for path, x in _each_image("predict", args.images, lambda p: _read_image(p, size, mode),
                               failures):
        p = model.predict(preprocess_input(x)[None], verbose=0)[0]
        i = int(p.argmax())
        name = f"{i}" if names is None or str(names[i]) == f"{i}" else f"{i} ({names[i]})"
        print(f"{path}: class {name} (p={p.max():.4f})  " + " ".join(f"{v:.3f}" for v in p))
    return 1 if failures else 0


def _cmd_classify(args):
    from .applications.mobilenet import MobileNet, preprocess_input
    from .pretrained import imagenet_labels
    t0 = time.perf_counter()
    model = MobileNet(weights="imagenet", weights_dir=args.weights)
    t1 = time.perf_counter()
    # the reference pipeline: RGB, bilinear resize to 224x224, x / 127.5 - 1
    # (the weights' reference top-5 are computed so; load_img's default is nearest)
    failures = []
    good = list(_each_image("classify", args.images, lambda p: _read_image(
        p, (224, 224), "rgb", interpolation="bilinear"), failures))
    if not good:
        return 1
    paths = [p for p, _ in good]
    probs = model.predict(preprocess_input(np.stack([x for _, x in good])), verbose=0)
    t2 = time.perf_counter()
    labels = imagenet_labels(args.weights)              # the full synonym lists
    for path, row in zip(paths, probs):
        print(path)
        for rank, index in enumerate(np.argsort(row, kind="stable")[::-1][:args.top], 1):
            print(f"  {rank}. {labels[index]:<40s} {row[index]:7.4f}  (class {index})")
    print(f"model load {t1 - t0:.2f} s, {len(paths)} images classified in "
          f"{t2 - t1:.2f} s", file=sys.stderr)
    return 1 if failures else 0


def _cmd_serve(args):
    from .serving import create_app
    from .serving.server import serve
    names = [n.strip() for n in args.classes.split(",")] if args.classes else None
    if not os.path.isfile(args.model):
        raise FileNotFoundError(f"no model file at {args.model}")

    def make_app():
        return create_app(args.model, class_names=names, dtype_policy=args.dtype_policy,
                          max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms,
                          max_queue=args.max_queue)
    return serve(make_app, host=args.host, port=args.port, workers=args.workers,
                 threads=args.threads, compute_threads=args.compute_threads,
                 max_connections=args.max_connections, request_timeout=args.request_timeout,
                 graceful_timeout=args.graceful_timeout, keepalive=args.keepalive,
                 forwarded_allow_ips=args.forwarded_allow_ips, access_log=args.access_log,
                 dev=args.dev)


def _train_options(p):
    p.add_argument("--recipe", choices=["tutorial", "fine_tune"], default="tutorial",
                   help="tutorial: Adam 1e-4, batch 10, 10 epochs, last 23 layers trainable; "
                        "fine_tune: aslnet's better default recipe")
    p.add_argument("--epochs", type=_int_in(1, 1_000_000), default=None,
                   help="tutorial recipe: epochs (default 10)")
    p.add_argument("--batch-size", type=_int_in(1, 65536), default=10)
    p.add_argument("--learning-rate", type=_positive_float, default=None,
                   help="tutorial recipe: Adam's learning rate (default 1e-4)")
    p.add_argument("--seed", type=int, default=None, help="weights/shuffling seed")
    p.add_argument("--weights", help="folder with the ImageNet weight files")
    p.add_argument("--out", default="digit_model.h5", help="where to save the model")
    p.add_argument("--verbose", type=int, default=2, choices=[0, 1, 2])
    p.add_argument("--dtype-policy", default="float32", choices=["float32", "mixed_bfloat16"],
                   help="mixed_bfloat16: every convolution computes in bfloat16 (float32 "
                        "weights and accumulation; about 2x faster on CPUs with AVX512_BF16)")


def _count_or_fraction(text):
    """A per-class count (an integer >= 1) or a fraction in [0, 1)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if 0 <= v < 1:
        return v
    if v >= 1 and v == int(v):
        return int(v)
    raise argparse.ArgumentTypeError(f"must be a count (an integer >= 1) or a fraction in "
                                     f"[0, 1), got {text}")


def _positive_float(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (v > 0 and np.isfinite(v)):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return v


def _split_options(p):
    p.add_argument("--valid", type=_count_or_fraction, default=30,
                   help="per class: a count or a fraction (default 30)")
    p.add_argument("--test", type=_count_or_fraction, default=5,
                   help="per class: a count or a fraction (default 5)")
    p.add_argument("--split-seed", type=int, default=0)


def _int_in(lo, hi):
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"must be in [{lo}, {hi}], got {v}")
        return v
    parse.__name__ = "int"
    return parse


def _serve_options(p):
    p.add_argument("model")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; 0.0.0.0: every interface)")
    p.add_argument("--port", type=_int_in(0, 65535), default=5000, help="0: any free port")
    p.add_argument("--classes", help="comma-separated class names, one per output "
                   "(default: the names saved with the model, else 0, 1, ...)")
    p.add_argument("--dtype-policy", choices=["float32", "mixed_bfloat16"],
                   help="override the saved model's dtype policy (mixed_bfloat16: about 2x "
                        "faster on CPUs with AVX512_BF16)")
    p.add_argument("--workers", type=_int_in(1, 256), default=1,
                   help="processes, each with its own copy of the model (default 1: batching "
                        "works best in one process)")
    p.add_argument("--threads", type=_int_in(1, 1024), default=32,
                   help="requests handled at once per worker (default 32)")
    p.add_argument("--compute-threads", type=_int_in(1, 1024), default=None,
                   help="OpenMP threads per worker (default: usable CPUs / workers)")
    p.add_argument("--max-connections", type=_int_in(2, 65536), default=256,
                   help="open connections per worker (default 256)")
    p.add_argument("--max-batch-size", type=_int_in(1, 1024), default=16,
                   help="images per predict call at most (default 16)")
    p.add_argument("--max-wait-ms", type=_float_in(0, 1000), default=5.0,
                   help="how long a batch waits for requests still arriving (default 5)")
    p.add_argument("--max-queue", type=_int_in(1, 65536), default=64,
                   help="images waiting at most; more get 429 (default 64)")
    p.add_argument("--request-timeout", type=_float_in(1, 3600), default=15.0,
                   help="seconds a request may take to arrive and be answered (default 15)")
    p.add_argument("--graceful-timeout", type=_float_in(0, 3600), default=30.0,
                   help="on SIGTERM, seconds left to requests in flight (default 30)")
    p.add_argument("--keepalive", type=_float_in(0, 3600), default=5.0,
                   help="seconds an idle keep-alive connection stays open (default 5)")
    p.add_argument("--forwarded-allow-ips", default=None,
                   help="behind a reverse proxy: its addresses, whose X-Forwarded-* "
                        "headers are trusted (gunicorn's option)")
    p.add_argument("--access-log", action="store_true", help="log each request to stderr")
    p.add_argument("--dev", action="store_true",
                   help="Flask's development server instead (one process, never debug mode)")


def _float_in(lo, hi):
    def parse(text):
        v = _positive_float(text) if lo > 0 else (0.0 if text.strip() in ("0", "0.0")
                                                   else _positive_float(text))
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"must be in [{lo}, {hi}], got {text}")
        return v
    parse.__name__ = "float"
    return parse


def build_parser():
    from . import __version__
    parser = argparse.ArgumentParser(prog="aslnet", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--version", action="version", version=f"aslnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("sign-digits", help="the whole tutorial on the sign-language digits")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="dataset folder (one folder per class)")
    p.add_argument("--workdir", default="aslnet-work", help="where the split is written")
    _split_options(p)
    _train_options(p)
    p.set_defaults(func=_cmd_sign_digits)

    p = sub.add_parser("split", help="non-destructive, seeded train/valid/test split")
    p.add_argument("src")
    p.add_argument("dst")
    _split_options(p)
    p.set_defaults(func=_cmd_split)

    p = sub.add_parser("train", help="fine-tune on SPLIT_DIR/train, validate on SPLIT_DIR/valid")
    p.add_argument("split_dir")
    _train_options(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="accuracy and confusion matrix of a saved model")
    p.add_argument("model")
    p.add_argument("directory")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("predict", help="class probabilities of single images (or of many, "
                       "on Dask, with --dask)")
    p.add_argument("model")
    p.add_argument("images", nargs="+", help="image files (with --dask also folders and "
                   "glob patterns such as 'photos/**/*.jpg')")
    p.add_argument("--dask", metavar="SCHEDULER|local", help="run on Dask: a scheduler "
                   "address, or 'local' for a LocalCluster on this machine")
    p.add_argument("--output", help="--dask: folder for the results, one file per partition "
                   "(a rerun skips finished partitions)")
    p.add_argument("--features", action="store_true", help="--dask: write the pooled "
                   "features (the head's input) instead of predictions")
    p.add_argument("--top", type=_int_in(1, 100000), help="--dask: only the top classes")
    p.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    p.add_argument("--batch-size", type=_int_in(1, 65536), default=32)
    p.add_argument("--partition-size", type=_int_in(1, 10_000_000), default=256)
    p.add_argument("--workers", type=_int_in(1, 4096), help="--dask local: worker "
                   "processes (default: cores / threads)")
    p.add_argument("--threads", type=_int_in(1, 1024), help="--dask local: C-core threads "
                   "per worker (default 1)")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("classify", help="ImageNet top-5 of some photos")
    p.add_argument("images", nargs="+", help="image files (JPEG, PNG, BMP)")
    p.add_argument("--weights", help="folder with the ImageNet weight files "
                   "(default: $ASLNET_WEIGHTS, the cache, or a download)")
    p.add_argument("--top", type=_int_in(1, 1000), default=5)
    p.set_defaults(func=_cmd_classify)

    p = sub.add_parser("serve", help="serve a saved model over HTTP (gunicorn; --dev: Flask's "
                       "development server)")
    _serve_options(p)
    p.set_defaults(func=_cmd_serve)
    return parser


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _warnings_as_lines(command, show_default):
    """A ``warnings.showwarning`` that prints aslnet's own warnings as one line
    ("aslnet train: warning: ...") and leaves other code's to ``show_default``."""
    def show(message, category, filename, lineno, file=None, line=None):
        if not os.path.abspath(filename).startswith(_PACKAGE_DIR):
            return show_default(message, category, filename, lineno, file, line)
        stream = sys.stderr if file is None else file
        try:
            stream.write(f"aslnet {command}: warning: {message}\n")
        except (OSError, AttributeError):
            pass
    return show


def main(argv=None):
    """Run a subcommand.  What the user can fix (a missing or unreadable file, a
    bad argument value, an unsupported model) is one line on stderr and exit
    status 2, as argparse's usage errors; ASLNET_DEBUG=1 shows the traceback.
    aslnet's warnings print as one line while the command runs; the process's
    warning handlers are as before once it returns."""
    from PIL import Image
    parser = build_parser()
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _warnings_as_lines(args.command, warnings.showwarning)
        try:
            return args.func(args)
        except (OSError, ValueError, NotImplementedError, Image.DecompressionBombError) as e:
            if os.environ.get("ASLNET_DEBUG"):
                raise
            parser.exit(2, f"aslnet {args.command}: error: {e}\n")
