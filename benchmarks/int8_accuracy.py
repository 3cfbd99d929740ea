"""int8 against float32 on the sign-language digits (issue 18: "accuracy is measured, not
assumed"): top-1 agreement and accuracy of ``model.quantize("int8")`` on a held-out split,
where the flips lie (the float32 top-1 margin of the images that change class), and what
keeping groups of layers in float32 buys.

The model is the tutorial's, trained by the CLI on a split it writes::

    aslnet sign-digits --data ../shared/data/sign-language-digits --workdir W --test 60 \\
        --split-seed 0 --seed 0 --out W/digit_model.h5
    .venv/bin/python -m benchmarks.int8_accuracy W/digit_model.h5 W/split \\
        [--calibration 20] [--out FILE.md]

Calibration: the first ``--calibration`` training images of each class (20: 200 images).
A group is kept in float32 by giving it no calibrated range (the C core then runs it in
float32: csrc/net_exec.c ``qparams``).

The peer: with TensorFlow and LiteRT installed, the same model file loaded by Keras,
quantized by TensorFlow Lite's converter (full-integer post-training quantization, per-channel
weights, the same calibration images as the representative dataset) and run by LiteRT: its
top-1 agreement with the same float32 predictions is the bar an int8 of this model reaches
elsewhere.
"""
import argparse
import glob
import os

import numpy as np

from aslnet import layers as L
from aslnet.applications.mobilenet import preprocess_input
from aslnet.models import load_model
from aslnet.preprocessing.image import img_to_array, load_img


def images(folder, per_class=None):
    """(preprocessed images, labels) of a split folder (one folder per class)."""
    xs, ys = [], []
    for k, cls in enumerate(sorted(os.listdir(folder))):
        for path in sorted(glob.glob(os.path.join(folder, cls, "*")))[:per_class]:
            xs.append(img_to_array(load_img(path, target_size=(224, 224))))
            ys.append(k)
    return preprocess_input(np.stack(xs)), np.array(ys)


def groups(model):
    """{conv layer name: range index of its fused group's input}."""
    net, out = model._core(), {}
    for i, layer in enumerate(net.layers):
        if isinstance(layer, (L.Conv2D, L.DepthwiseConv2D)):
            prev = net.layers[i - 1] if i else None
            out[layer.name] = net.first_op(prev if isinstance(prev, L.ZeroPadding2D)
                                           else layer)
    return out


def measure(model_path, split, per_class=20):
    xt, yt = images(os.path.join(split, "test"))
    xc, _ = images(os.path.join(split, "train"), per_class)
    model = load_model(model_path)
    p32 = model.predict(xt, verbose=0)
    model.quantize("int8", calibration_data=xc)
    base, index = model._int8_ranges.copy(), groups(model)
    names = list(index)

    def run(float_groups):
        ranges = base.copy()
        for name in float_groups:
            ranges[index[name]] = (np.inf, -np.inf)     # no range: this group in float32
        model._int8_ranges = ranges
        p8 = model.predict(xt, verbose=0)
        return p8, {"float32 groups": len(float_groups),
                    "agreement": float(np.mean(p8.argmax(1) == p32.argmax(1))),
                    "accuracy int8": float(np.mean(p8.argmax(1) == yt)),
                    "max |dp|": float(np.abs(p8 - p32).max())}

    p8, all_int8 = run([])
    variants = {"all groups int8": all_int8}
    for label, chosen in (("conv1 in float32", ["conv1"]),
                          ("depthwise groups in float32", [n for n in names if "dw" in n]),
                          ("pointwise groups in float32", [n for n in names if "pw" in n]),
                          ("last 8 groups in float32", names[-8:])):
        variants[label] = run(chosen)[1]
    peer = tflite_ptq(model_path, xt, xc)
    if peer is not None:
        variants["TFLite full-int8 PTQ, run by LiteRT (peer)"] = {
            "float32 groups": "—", "agreement": float(np.mean(peer.argmax(1) == p32.argmax(1))),
            "accuracy int8": float(np.mean(peer.argmax(1) == yt)),
            "max |dp|": float(np.abs(peer - p32).max())}
    top2 = np.sort(p32, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    flips = p8.argmax(1) != p32.argmax(1)
    by_margin = {t: (float(np.mean(~flips[margin >= t])), int(np.sum(margin >= t)))
                 for t in (0.0, 0.05, 0.1, 0.2)}
    return {"test images": len(xt), "calibration images": len(xc),
            "accuracy float32": float(np.mean(p32.argmax(1) == yt)), "variants": variants,
            "flip margins": sorted(float(m) for m in margin[flips]), "by margin": by_margin}


def tflite_ptq(model_path, xt, xc):
    """LiteRT's predictions of ``xt`` by the model file quantized by TensorFlow Lite's
    converter (full integer, ``xc`` as the representative dataset); None without
    TensorFlow or LiteRT."""
    try:
        import keras
        import tensorflow as tf
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        return None
    conv = tf.lite.TFLiteConverter.from_keras_model(keras.models.load_model(model_path,
                                                                           compile=False))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([xc[i:i + 1]] for i in range(len(xc)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    it = Interpreter(model_content=conv.convert(), num_threads=os.cpu_count())
    it.allocate_tensors()
    src, dst = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    out = []
    for k in range(len(xt)):
        it.set_tensor(src, xt[k:k + 1].astype(np.float32))
        it.invoke()
        out.append(it.get_tensor(dst)[0].copy())
    return np.array(out)


def markdown(r, title):
    out = [f"# {title}", "",
           f"{r['test images']} held-out images, calibrated on {r['calibration images']} "
           f"training images; float32 accuracy {r['accuracy float32']:.1%}.", "",
           "| int8 variant | float32 groups | top-1 agreement | int8 accuracy | max abs dp |",
           "|---|---|---|---|---|"]
    for label, v in r["variants"].items():
        out.append(f"| {label} | {v['float32 groups']} | {v['agreement']:.1%} | "
                   f"{v['accuracy int8']:.1%} | {v['max |dp|']:.3f} |")
    out += ["", "Float32 top-1 margin (top-1 minus top-2 probability) of the images int8 "
            "moves to another class: " + ", ".join(f"{m:.3f}" for m in r["flip margins"]), "",
            "| images with float32 margin >= | images | agreement |", "|---|---|---|"]
    for t, (agree, n) in r["by margin"].items():
        out.append(f"| {t} | {n} | {agree:.1%} |")
    return "\n".join(out) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("split", help="the folder with train/ and test/ (the CLI's workdir/split)")
    ap.add_argument("--calibration", type=int, default=20, help="training images per class")
    ap.add_argument("--out", help="write the Markdown table here too")
    args = ap.parse_args(argv)
    from aslnet import _core
    from benchmarks import peak
    cpu = peak.cpuinfo()["model"]
    text = markdown(measure(args.model, args.split, args.calibration),
                    f"int8 vs float32 on the digits ({cpu}, VNNI: {_core.int8_vnni()})")
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
