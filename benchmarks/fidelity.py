"""Fidelity: the tutorial's recipe (Adam 1e-4, batch 10, 10 epochs, last 23 layers
trainable) in aslnet and in Keras, on the same split, the same arrays and the same initial
weights (aslnet's, exported with ``aslnet.utils.keras_export.to_keras``); prints one JSON line
with the test accuracy and fit time.  Run each side in its own process:

    python -m benchmarks.fidelity aslnet SEED    # first: writes the initial head weights
    python -m benchmarks.fidelity keras SEED     # after aslnet's run of the same SEED

With ``--same-order`` both sides also see the same batches: each epoch's order is a
permutation drawn from the seed, fed with ``shuffle=False`` one epoch at a time (the
optimizer state carries over), which leaves the frameworks' arithmetic as the only
difference.  ``--bf16`` (aslnet only) runs under the mixed_bfloat16 dtype policy: the
accuracy cost of bfloat16 is the difference from the float32 run of the same seed.

The split is valid 30 / test 20 per class (split seed 0, 1,268 train images): 200 test
images, so one image is 0.5 pp.  Seeds change the new head's initialisation and the batch
order.
"""
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

SHARED = Path(os.environ.get("ASLNET_SHARED", Path(__file__).resolve().parents[2] / "shared"))
WORK = Path(os.environ.get("ASLNET_FIDELITY_WORK", "/tmp/aslnet-fidelity"))


def arrays(split, sub):
    from aslnet.applications import mobilenet
    from aslnet.preprocessing.image import ImageDataGenerator
    it = ImageDataGenerator(preprocessing_function=mobilenet.preprocess_input) \
        .flow_from_directory(str(split / sub), target_size=(224, 224), batch_size=64,
                             shuffle=False)
    xs, ys = zip(*(it[i] for i in range(len(it))))
    return np.concatenate(xs), np.concatenate(ys)


def main(which, seed, same_order=False, bf16=False):
    import aslnet
    aslnet.mixed_precision.set_global_policy("mixed_bfloat16" if bf16 else "float32")
    from aslnet.utils import split_dataset
    split = WORK / "split"
    split_dataset(SHARED / "data" / "sign-language-digits", split, valid=30, test=20, seed=0)
    (x, y), (vx, vy), (tx, ty) = (arrays(split, s) for s in ("train", "valid", "test"))
    init = WORK / f"init{seed}.npz"
    aslnet.set_random_seed(seed)
    model = aslnet.load_pretrained("mobilenet", num_classes=10,
                                   weights_dir=SHARED / "weights")
    if which == "keras":
        model.layers[-1].set_weights(list(np.load(init).values()))
    elif not bf16:
        np.savez(init, *model.layers[-1].get_weights())
    model.compile(optimizer=aslnet.optimizers.Adam(1e-4), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    if which == "keras":
        import keras

        from aslnet.utils.keras_export import to_keras
        keras.utils.set_random_seed(seed)
        model = to_keras(model)
    t = time.perf_counter()
    if same_order:
        rng = np.random.default_rng(1000 + seed)
        for epoch in range(10):
            p = rng.permutation(len(x))
            model.fit(x[p], y[p], batch_size=10, epochs=1, shuffle=False,
                      validation_data=(vx, vy), verbose=0)
    else:
        model.fit(x, y, batch_size=10, epochs=10, validation_data=(vx, vy), verbose=0)
    t = time.perf_counter() - t
    acc = float(model.evaluate(tx, ty, verbose=0)[1])
    print(json.dumps({"which": which, "seed": seed, "same_order": same_order,
                      "policy": aslnet.mixed_precision.global_policy().name,
                      "test_accuracy": acc,
                      "fit_s": round(t, 1), "test_images": len(tx)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), "--same-order" in sys.argv[3:], "--bf16" in sys.argv[3:])
