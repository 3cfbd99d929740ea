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

``--arch mobilenet_v2`` (aslnet only) runs the same recipe on MobileNetV2 (its last 23
layers trainable, as ``load_pretrained`` cuts it), and ``--fine-tune`` runs
``aslnet.recipes.fine_tune`` (head warm-up, then unfreezing from the model's
``fine_tune_from``) instead of the tutorial's 10 epochs: v1 and v2 on the same split,
seeds and arrays.

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


def main(which, seed, same_order=False, bf16=False, arch="mobilenet", recipe="tutorial"):
    import aslnet
    aslnet.mixed_precision.set_global_policy("mixed_bfloat16" if bf16 else "float32")
    from aslnet.utils import split_dataset
    split = WORK / "split"
    split_dataset(SHARED / "data" / "sign-language-digits", split, valid=30, test=20, seed=0)
    (x, y), (vx, vy), (tx, ty) = (arrays(split, s) for s in ("train", "valid", "test"))
    init = WORK / (f"init{seed}.npz" if arch == "mobilenet" else f"init-{arch}-{seed}.npz")
    aslnet.set_random_seed(seed)
    if which == "keras" and recipe != "tutorial":
        raise SystemExit("the keras side runs the tutorial recipe only")
    model = aslnet.load_pretrained(arch, num_classes=10,
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
        model = to_keras(model) if arch == "mobilenet" else _keras_v2(keras, model)
    t = time.perf_counter()
    if recipe == "fine_tune":
        from aslnet.preprocessing.image import ImageDataGenerator
        from aslnet.recipes import fine_tune
        fine_tune(model, ImageDataGenerator().flow(x, y, batch_size=10, seed=seed),
                  validation_data=(vx, vy), verbose=0)
    elif same_order:
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
                      "arch": arch, "recipe": recipe,
                      "policy": aslnet.mixed_precision.global_policy().name,
                      "test_accuracy": acc,
                      "fit_s": round(t, 1), "test_images": len(tx)}), flush=True)


def _keras_v2(keras, model):
    """Keras's MobileNetV2 (include_top=False, pooling='avg') + the same Dense head,
    with aslnet's weights and trainable flags copied by layer name, compiled alike."""
    from aslnet.utils.keras_export import copy_weights, keras_optimizer
    base = keras.applications.MobileNetV2(input_shape=model.input_shape[1:],
                                          include_top=False, pooling="avg", weights=None)
    head = model.layers[-1]
    out = keras.layers.Dense(head.units, activation="softmax", name=head.name)(base.output)
    kmodel = keras.Model(base.input, out)
    copy_weights(model, kmodel, trainable=True)
    kmodel.compile(optimizer=keras_optimizer(model.optimizer), loss=model.loss,
                   metrics=["accuracy"])
    return kmodel


if __name__ == "__main__":
    flags = sys.argv[3:]
    arch = flags[flags.index("--arch") + 1] if "--arch" in flags else "mobilenet"
    main(sys.argv[1], int(sys.argv[2]), "--same-order" in flags, "--bf16" in flags, arch,
         "fine_tune" if "--fine-tune" in flags else "tutorial")
