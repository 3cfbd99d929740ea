"""What the augmentation layers cost in a training step (issue 14: "augmentation of a
batch must not cost more than a small fraction of a training step").

TensorFlow's transfer-learning tutorial model (MobileNetV2 at 160x160 without top,
``base(x, training=False)``, GlobalAveragePooling2D, Dropout, Dense(1) on logits),
trained with ``train_on_batch`` at batch 32: once with the augmentation layers in front
of it and once without, in the same process, interleaved.  The difference of the two
medians is the augmentation's cost.  Two phases as the tutorial has them: the base
frozen (a cheap step: only the head trains) and fine-tuning from layer 100.

    .venv/bin/python -m benchmarks.augmentation [--reps 15] [--batch 32] [--out FILE.md]
"""
import argparse
import os
import time

import numpy as np

import aslnet as keras
from benchmarks import peak
from benchmarks.common import summary
from benchmarks.report import _fig

AUGMENTATIONS = {
    "tutorial (RandomFlip, RandomRotation(0.2))":
        lambda: [keras.layers.RandomFlip("horizontal"), keras.layers.RandomRotation(0.2)],
    "all five (Flip, Rotation, Zoom, Translation, Contrast)":
        lambda: [keras.layers.RandomFlip("horizontal"), keras.layers.RandomRotation(0.2),
                 keras.layers.RandomZoom(0.2), keras.layers.RandomTranslation(0.1, 0.1),
                 keras.layers.RandomContrast(0.2)],
}


def tutorial_model(augment, fine_tune):
    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(input_shape=(160, 160, 3), include_top=False,
                                          weights=None)
    inputs = keras.Input(shape=(160, 160, 3))
    x = inputs
    for layer in augment():
        x = layer(x)
    x = keras.applications.mobilenet_v2.preprocess_input(x)
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    model = keras.Model(inputs, keras.layers.Dense(1)(x))
    base.trainable = fine_tune
    if fine_tune:
        for layer in base.layers[:100]:
            layer.trainable = False
    model.compile(optimizer=keras.optimizers.RMSprop(1e-5),
                  loss=keras.losses.BinaryCrossentropy(from_logits=True))
    return model


def step_time(model, x, y):
    t = time.perf_counter()
    model.train_on_batch(x, y)
    return time.perf_counter() - t


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--out", help="also write the Markdown table to this file")
    a = p.parse_args(argv)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (a.batch, 160, 160, 3)).astype(np.float32)
    y = rng.integers(0, 2, (a.batch, 1)).astype(np.float32)
    cpu = peak.cpuinfo()
    lines = [f"# Augmentation cost in a training step ({cpu['model']}, "
             f"{cpu['logical_cpus']} CPUs visible, OMP_NUM_THREADS="
             f"{os.environ.get('OMP_NUM_THREADS', 'unset')})", "",
             f"TensorFlow's transfer-learning model, MobileNetV2 160x160, batch {a.batch}, "
             f"`train_on_batch`; ms per step, median (min–max) of {a.reps}.", "",
             "| phase | augmentation | step without | step with | cost | share of step |",
             "|---|---|---|---|---|---|"]
    for phase, fine_tune in (("base frozen", False), ("fine-tune from layer 100", True)):
        plain = tutorial_model(lambda: [], fine_tune)
        for name, augment in AUGMENTATIONS.items():
            aug = tutorial_model(augment, fine_tune)
            step_time(plain, x, y), step_time(aug, x, y)    # plan the primitives
            t0, t1 = [], []
            for _ in range(a.reps):             # interleaved: the machine's drift hits both
                t0.append(step_time(plain, x, y))
                t1.append(step_time(aug, x, y))
            s0, s1 = summary([1e3 * t for t in t0]), summary([1e3 * t for t in t1])
            cost = s1["median"] - s0["median"]
            lines.append(f"| {phase} | {name} | {_fig(s0)} | {_fig(s1)} | {cost:.1f} ms "
                         f"| {100 * cost / s1['median']:.1f}% |")
            print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        tmp = a.out + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, a.out)


if __name__ == "__main__":
    main()
