"""Trained by tests/distribution/test_data_parallel.py, once in one process and
once under ``mpirun -n 2 python -m mpi4py``: a small Conv/Dense model, 2
epochs, weights and History written to OUTDIR/rank<r>.npz.

    python dp_script.py OUTDIR OPTIMIZER(sgd|adam) BN(frozen|sync|local|none) [SAMPLES (40)]
        [DATA (arrays|flow)]

BN: a BatchNormalization after conv1, frozen (inference mode), trainable and
synchronized=True (the global batch's statistics), trainable and unsynchronized
(each rank's slice's statistics), or none.  DATA: NumPy arrays, or an
ImageDataGenerator flow over them with a seeded augmentation (each rank then
transforms only its slice of each batch).
"""
import json
import os
import sys

import numpy as np

import aslnet
from aslnet import layers
from aslnet import distribution as dist


def main(outdir, optimizer, bn, samples="40", source="arrays"):
    dist.set_distribution(dist.DataParallel())
    # rank 1 draws other initial weights: fit must start from rank 0's
    aslnet.set_random_seed(1234 + 1000 * dist.process_id())
    inputs = aslnet.Input((8, 8, 3))
    h = layers.Conv2D(6, 3, padding="same", name="conv1")(inputs)
    if bn != "none":
        norm = layers.BatchNormalization(name="bn1", synchronized=bn == "sync")
        h = norm(h)
    h = layers.ReLU(name="relu1")(h)
    h = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="conv2")(h)
    h = layers.GlobalAveragePooling2D(name="pool")(h)
    h = layers.Dense(8, activation="relu", name="fc1")(h)
    outputs = layers.Dense(4, activation="softmax", name="out")(h)
    model = aslnet.Model(inputs, outputs)
    if bn != "none":
        r = np.random.default_rng(7 + dist.process_id())
        norm.set_weights([r.uniform(0.5, 1.5, 6).astype(np.float32),
                          r.uniform(-0.2, 0.2, 6).astype(np.float32),
                          r.uniform(-0.2, 0.2, 6).astype(np.float32),
                          r.uniform(0.5, 1.5, 6).astype(np.float32)])
        norm.trainable = bn != "frozen"
    opt = (aslnet.optimizers.SGD(learning_rate=0.1) if optimizer == "sgd"
           else aslnet.optimizers.Adam(learning_rate=0.01, epsilon=1e-3))
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    data = np.random.default_rng(0)          # the same data on every rank
    x = data.uniform(0, 1, (int(samples), 8, 8, 3)).astype(np.float32)
    y = data.integers(0, 4, int(samples))
    vx = data.uniform(0, 1, (13, 8, 8, 3)).astype(np.float32)
    vy = data.integers(0, 4, 13)
    aslnet.set_random_seed(99)               # shuffling: rank 0's state is used
    # batch 7: slices of 3 and 4 (uneven), the last batch of 5: 2 and 3
    callbacks = [aslnet.callbacks.ModelCheckpoint(os.path.join(outdir, "best.keras"),
                                                  save_best_only=True, verbose=1),
                 aslnet.callbacks.EarlyStopping(monitor="val_loss", patience=5)]
    if source == "flow":
        gen = aslnet.preprocessing.image.ImageDataGenerator(width_shift_range=0.2,
                                                            horizontal_flip=True)
        hist = model.fit(gen.flow(x, y, batch_size=7, seed=3), epochs=2, verbose=2,
                         validation_data=(vx, vy), validation_batch_size=5,
                         callbacks=callbacks)
    else:
        hist = model.fit(x, y, batch_size=7, epochs=2, verbose=2, shuffle=True,
                         validation_data=(vx, vy), validation_batch_size=5,
                         callbacks=callbacks)
    weights = {f"{l.name}/{i}": w for l in model.layers for i, w in enumerate(l.get_weights())}
    np.savez(os.path.join(outdir, f"rank{dist.process_id()}.npz"),
             history=json.dumps(hist.history), **weights)
    model.save(os.path.join(outdir, "model.keras"))


if __name__ == "__main__":
    main(*sys.argv[1:6])
