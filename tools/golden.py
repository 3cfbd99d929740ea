"""Golden digests: a fixed-seed workload through the public API, with a
SHA-256 digest of each result, to prove that a move of code computes the
same bits.

    python tools/golden.py                      # print the digests (JSON)
    python tools/golden.py --write F            # write them to F
    python tools/golden.py --check F            # compare with F; exit 1 on a difference

Digests are bit-exact only for the same machine, oneDNN ISA and thread
count (2 threads are forced here).  Where a change legitimately moves bits,
``--values F`` saves the arrays (npz) so the two runs can be compared to a
float tolerance.

Workload: a small conv/BN/ReLU6/depthwise model fitted on arrays (Adam,
2 epochs, validation), its weights and optimizer state, predict at batch
32, evaluate, save then load (and predict again); the ImageNet MobileNet
with a new head on a subset of the shared digits: predict, and both phases
of ``fine_tune`` (2 + 1 epochs).
"""
import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _digest(*arrays):
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _history(hist):
    return {k: [float(v) for v in vals] for k, vals in sorted(hist.history.items())}


def _opt_state(model):
    st = model.get_optimizer_state()
    return [st["iterations"]] + [st["slots"][k] for k in sorted(st["slots"])]


_ARTIFACTS = None


def small_workload(out, values):
    import aslnet
    from aslnet.layers import (BatchNormalization, Conv2D, Dense, DepthwiseConv2D,
                               GlobalAveragePooling2D, Input, ReLU)
    from aslnet.models import Model, load_model
    aslnet.set_random_seed(1234)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((96, 24, 24, 3)).astype(np.float32)
    y = np.eye(5, dtype=np.float32)[rng.integers(0, 5, 96)]
    inp = Input((24, 24, 3))
    h = Conv2D(16, 3, strides=2, padding="same", use_bias=False)(inp)
    h = BatchNormalization()(h)
    h = ReLU(6.0)(h)
    h = DepthwiseConv2D(3, padding="same", use_bias=False)(h)
    h = BatchNormalization()(h)
    h = ReLU(6.0)(h)
    h = Conv2D(32, 1, use_bias=False)(h)
    h = BatchNormalization()(h)
    h = ReLU(6.0)(h)
    h = GlobalAveragePooling2D()(h)
    o = Dense(5, activation="softmax")(h)
    model = Model(inp, o)
    model.compile(optimizer=aslnet.optimizers.Adam(1e-3), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    hist = model.fit(x[:80], y[:80], batch_size=16, epochs=2, verbose=0,
                     validation_data=(x[80:], y[80:]))
    out["small.fit.history"] = _digest(json.dumps(_history(hist)).encode())
    w = model.get_weights()
    out["small.fit.weights"] = _digest(*w)
    out["small.fit.optimizer"] = _digest(*_opt_state(model))
    p = model.predict(x, batch_size=32, verbose=0)
    out["small.predict.b32"] = _digest(p)
    ev = model.evaluate(x, y, batch_size=32, verbose=0)
    out["small.evaluate"] = _digest(np.array(ev, np.float64))
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.h5")
        model.save(path)
        m2 = load_model(path)
        out["small.load.weights"] = _digest(*m2.get_weights())
        out["small.load.optimizer"] = _digest(*_opt_state(m2))
        p2 = m2.predict(x, batch_size=32, verbose=0)
        out["small.load.predict"] = _digest(p2)
        tl = m2.train_on_batch(x[:16], y[:16])
        out["small.load.train_on_batch"] = _digest(np.array(tl, np.float64),
                                                   *m2.get_weights())
    if _ARTIFACTS:
        import pickle
        d = Path(_ARTIFACTS)
        d.mkdir(parents=True, exist_ok=True)
        model.save(d / "small.h5")
        (d / "small.pkl").write_bytes(pickle.dumps(model))
        np.save(d / "small.input.npy", x[:8])
        np.save(d / "small.predict.npy", p[:8])
    values.update(small_weights=np.concatenate([a.ravel() for a in w]), small_predict=p)


def _digit_subset(data, per_class):
    from aslnet.preprocessing.image import img_to_array, load_img
    xs, ys = [], []
    for c in range(10):
        files = sorted((data / str(c)).iterdir())[:per_class]
        for f in files:
            xs.append(img_to_array(load_img(f, target_size=(224, 224))))
            ys.append(c)
    x = np.stack(xs) / 127.5 - 1.0
    return x.astype(np.float32), np.eye(10, dtype=np.float32)[ys]


def pretrained_workload(out, values, shared):
    import aslnet
    aslnet.set_random_seed(99)
    x, y = _digit_subset(shared / "data" / "sign-language-digits", 6)
    model = aslnet.load_pretrained("mobilenet", num_classes=10,
                                   weights_dir=shared / "weights")
    p = model.predict(x[:32], batch_size=32, verbose=0)
    out["mobilenet.predict.b32"] = _digest(p)
    idx = np.random.default_rng(3).permutation(len(x))
    tr, va = idx[:44], idx[44:]
    from aslnet.preprocessing.image import ImageDataGenerator
    train = ImageDataGenerator().flow(x[tr], y[tr], batch_size=11, shuffle=True, seed=5)
    hist = model.fine_tune(train, validation_data=(x[va], y[va]), head_epochs=2, epochs=1,
                           verbose=0)
    out["mobilenet.fine_tune.head_history"] = _digest(
        json.dumps(_history(model.head_history)).encode())
    out["mobilenet.fine_tune.history"] = _digest(json.dumps(_history(hist)).encode())
    out["mobilenet.fine_tune.weights"] = _digest(*model.get_weights())
    p2 = model.predict(x, batch_size=32, verbose=0)
    out["mobilenet.fine_tune.predict"] = _digest(p2)
    values.update(mobilenet_predict=p, mobilenet_tuned_predict=p2)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write")
    ap.add_argument("--check")
    ap.add_argument("--values", help="save the compared arrays to this .npz")
    ap.add_argument("--artifacts", help="also save the small model here (.h5 and pickle), "
                    "with inputs and predictions, for the compatibility tests")
    ap.add_argument("--shared", default=os.environ.get("ASLNET_SHARED",
                                                       str(ROOT.parent / "shared")))
    args = ap.parse_args(argv)
    global _ARTIFACTS
    _ARTIFACTS = args.artifacts
    import aslnet
    aslnet.set_num_threads(2)
    out, values = {}, {}
    small_workload(out, values)
    pretrained_workload(out, values, Path(args.shared))
    if args.values:
        np.savez(args.values, **values)
    text = json.dumps(out, indent=1, sort_keys=True)
    if args.write:
        Path(args.write).write_text(text + "\n")
    if args.check:
        want = json.loads(Path(args.check).read_text())
        bad = {k: (want.get(k), out.get(k)) for k in sorted(set(want) | set(out))
               if want.get(k) != out.get(k)}
        for k, (a, b) in bad.items():
            print(f"DIFFERS {k}: {a} -> {b}")
        print(f"{len(want) - len(bad)} of {len(want)} digests match")
        return 1 if bad else 0
    if not args.write:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
