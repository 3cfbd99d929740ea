"""Training throughput of data-parallel fit (aslnet.distribution) on the tutorial's
workload: MobileNet v1 224x224, the last 23 layers trainable (load_pretrained's default),
Adam, global batch 32, the frozen-trunk cache off (every step computes the trunk, as the
first epoch does and as augmented data always does).  Random weights and images: the
throughput does not depend on their values.

    python benchmarks/data_parallel.py --threads 2                                # 1 x 2
    mpirun -n 2 python -m mpi4py benchmarks/data_parallel.py --threads 1          # 2 x 1

Rank 0 prints one JSON line: images/s over the timed epochs (the first epoch, which
plans the primitives, is left out), per-epoch figures and the setup.
"""
import argparse
import json
import platform
import time

import numpy as np

import aslnet
from aslnet import distribution as dist


class _Timer(aslnet.callbacks.Callback):
    """Wall time of each epoch."""

    def __init__(self):
        super().__init__()
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._t)


def main(argv=None):
    """Run the benchmark (see the module)."""
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=0, help="per process (0: the default)")
    p.add_argument("--images", type=int, default=96)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--epochs", type=int, default=4)
    args = p.parse_args(argv)
    dist.set_distribution(dist.DataParallel())
    if args.threads:
        aslnet.set_num_threads(args.threads)
    aslnet.set_random_seed(0)
    model = aslnet.load_pretrained("mobilenet", num_classes=10, weights=None)
    model.trunk_cache_bytes = 0
    model.compile(optimizer=aslnet.optimizers.Adam(1e-4),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    r = np.random.default_rng(0)
    x = r.uniform(-1, 1, (args.images, 224, 224, 3)).astype(np.float32)
    y = r.integers(0, 10, args.images)
    timer = _Timer()
    model.fit(x, y, batch_size=args.batch, epochs=args.epochs, verbose=0, callbacks=[timer])
    timed = timer.times[1:]
    if dist.process_id() == 0:
        print(json.dumps({
            "processes": dist.num_processes(), "threads_per_process": aslnet.get_num_threads(),
            "images_per_s": round(args.images * len(timed) / sum(timed), 2),
            "epoch_s": [round(t, 3) for t in timer.times], "images": args.images,
            "global_batch": args.batch, "machine": platform.processor() or platform.machine()}))


if __name__ == "__main__":
    main()
