"""Run a script written for aslnet, unchanged, on Keras 3 (the comparison of
test_scripts.py):

    python _keras_runner.py IMAGENET_NPZ WEIGHTS_DIR SCRIPT ARGS...

* ``import aslnet as keras`` and ``from aslnet.X import Y`` give ``keras`` and
  ``keras.X`` themselves (an import hook maps every ``aslnet...`` module name to
  the ``keras...`` module of the same path; ``aslnet.data``, tf.data's stand-in,
  to ``tensorflow.data``);
* Keras cannot download its ImageNet weights here: ``MobileNet`` and
  ``MobileNetV2`` with ``weights='imagenet'`` are built with ``weights=None``
  and get aslnet's ImageNet weights (IMAGENET_NPZ: ``<class>/<layer>/<k>``
  arrays, the same layer names in both), and ``decode_predictions`` reads the
  class ids and names from WEIGHTS_DIR (imagenet_synsets.txt,
  imagenet_labels.txt) instead of Keras's download.
"""
import importlib
import importlib.abc
import importlib.util
import os
import runpy
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class _AslnetIsKeras(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``aslnet[.X]`` -> the module ``keras[.X]`` (the same object)."""

    def find_spec(self, name, path=None, target=None):
        if name == "aslnet" or name.startswith("aslnet."):
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        # the import system returns what sys.modules holds after this
        name = module.__name__
        sys.modules[name] = importlib.import_module(
            "tensorflow.data" if name == "aslnet.data" else "keras" + name[len("aslnet"):])


def _imagenet_weights(npz_path):
    import numpy as np
    arrays = np.load(npz_path)

    def patch(make, kind):
        def build(*args, weights="imagenet", **kwargs):
            model = make(*args, weights=None if weights == "imagenet" else weights, **kwargs)
            if weights == "imagenet":
                for layer in model.layers:
                    key = f"{kind}/{layer.name}/"
                    ws = [arrays[key + str(k)] for k in range(len(layer.weights))
                          if key + str(k) in arrays]
                    if ws and len(ws) == len(layer.weights) and all(
                            w.shape == tuple(v.shape) for w, v in zip(ws, layer.weights)):
                        layer.set_weights(ws)
            return model
        build.__name__ = make.__name__
        return build
    return patch


def _decode_predictions(weights_dir):
    import numpy as np

    def read(name):
        with open(os.path.join(weights_dir, name), encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]
    synsets, labels = read("imagenet_synsets.txt"), read("imagenet_labels.txt")[1:]

    def decode_predictions(preds, top=5):
        preds = np.asarray(preds)
        out = []
        for row in preds:
            idx = np.argsort(row)[::-1][:top]
            out.append([(synsets[i], labels[i].split(",")[0].strip().replace(" ", "_"),
                         float(row[i])) for i in idx])
        return out
    return decode_predictions


def main():
    npz, weights_dir, script, *args = sys.argv[1:]
    import keras
    from keras.src.applications import imagenet_utils, mobilenet, mobilenet_v2
    patch = _imagenet_weights(npz)
    decode = _decode_predictions(weights_dir)
    for module, name, kind in ((mobilenet, "MobileNet", "MobileNet"),
                               (mobilenet_v2, "MobileNetV2", "MobileNetV2")):
        built = patch(getattr(module, name), kind)
        setattr(module, name, built)
        setattr(keras.applications, name, built)
        setattr(getattr(keras.applications, module.__name__.rsplit(".", 1)[-1]), name, built)
    for module in (imagenet_utils, mobilenet, mobilenet_v2, keras.applications.imagenet_utils,
                   keras.applications.mobilenet, keras.applications.mobilenet_v2):
        module.decode_predictions = decode
    sys.meta_path.insert(0, _AslnetIsKeras())
    sys.argv = [script, *args]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
