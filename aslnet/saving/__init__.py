"""Saving and loading models and weights (``Model.save``, ``models.load_model``,
``Model.save_weights``, ``Model.load_weights``).

File format
-----------
Every file aslnet writes is HDF5 (h5py) in **Keras 2.x's legacy h5 layout**,
as ``tf.keras`` 2.6 writes it for ``model.save("m.h5")``:

* root attributes ``keras_version`` ('2.6.0'), ``backend`` ('tensorflow'),
  ``model_config`` (JSON: ``{"class_name": "Functional" | "Sequential",
  "config": {...}}`` with Keras 2.6 layer configs) and, for a compiled model
  saved with ``include_optimizer=True``, ``training_config`` (JSON: loss,
  metrics, ``optimizer_config``);
* group ``model_weights``: attributes ``layer_names``, ``backend``,
  ``keras_version``; one group per layer with attribute ``weight_names``
  and datasets ``model_weights/<layer>/<layer>/<weight>:0``;
* group ``optimizer_weights`` (with ``include_optimizer`` once the optimizer
  has state): attribute ``weight_names`` = ``Adam/iter:0``, then the first
  slot of every trainable weight (``Adam/<layer>/<weight>/m:0``), then the
  second (``.../v:0``) -- ``SGD/.../momentum:0`` for SGD with momentum.

``save_weights`` writes Keras's weights-only layout (the ``model_weights``
group's content at the root of the file).

``.keras`` gets Keras 3's zip archive and ``save_weights`` to a
``.weights.h5`` path Keras 3's weights layout, as Keras 3 writes them
(``keras3_format``; loading either looks at the content, not the suffix,
so h5 files earlier aslnet versions wrote as ``.keras`` still load).
``.h5`` and ``.hdf5`` (the suffixes tf.keras 2.x saves as h5) get exactly
the h5 layout above.  Any other suffix (``.aslnet``, none...) gets aslnet's
native format: the very same HDF5 file, plus an integrity header in HDF5's
user block (the 512 bytes HDF5 reserves for applications before its
superblock): a magic, the length and the SHA-256 of the rest of the file.
h5py and tf.keras 2.x read it as any h5 file; aslnet checks it before
libhdf5 parses anything, so a truncated or corrupted native file gives a
clear error and silent corruption of weights is detected.  Any other HDF5
content (``.h5`` files, Keras's or aslnet's, and the weights inside a
``.keras`` archive) is read through once in a child process first
(``h5_probe``): libhdf5 can crash, spin or allocate gigabytes on some
corrupt files, and there that is a ``ModelFileError``, not a dead kernel.  Editing a native file with h5py
invalidates its checksum (edit ``.h5`` files instead).  No suffix is *not* a
TensorFlow SavedModel directory.  Keras 3 opens aslnet's h5 files (through
its legacy h5 loader); aslnet opens the weights of the h5 files Keras 3's
``model.save('m.h5')`` writes (``load_weights``), not their model config
(Keras 3's legacy form: ``load_model`` says to save ``.keras`` instead).
Loading never looks at the suffix: it sniffs the zip and HDF5 signatures
and the header.

Every write is atomic: the file is written to a temporary file in the same
directory (``.<name>.aslnet-<host>-<pid>-<random>.tmp``), flushed and
fsync'ed, then moved over the destination with ``os.replace``; an
interrupted save leaves the previous file (if any) untouched and no
temporary file behind.  A save killed outright (``kill -9``, power loss)
cannot remove its temporary file: the next save to the same destination
does, once its process is gone (or, for another host's, after a day
without writes); a live save's temporary file is never touched.

Rebuilding a model: each layer is ``aslnet.layers.LAYER_CLASSES[class_name]
.from_config(config)`` with aslnet's own config keys (the Keras-only keys are
checked to hold values aslnet implements, then dropped), connected as a
chain through ``inbound_nodes``.  Only chains (one input, one output, one
inbound tensor per layer) are supported.

Not saved, because the C core does not expose it: the position of a
``Dropout`` layer's random stream (a loaded model restarts it from the
layer's seed) and optimizer slots of layers that are frozen at save time.
As in Keras, an ``InputLayer``'s ``trainable`` flag is not saved.

Modules (none imports ``aslnet.models``: the model classes register
themselves with ``serialization.register_model_class``):

* ``saving_api``: ``save_model``, ``load_model``, ``save_weights``,
  ``load_weights``;
* ``serialization``: layer and model configs in Keras's form, both ways,
  and the registry of model classes;
* ``optimizer_state``: training config, optimizer config, slot order and
  the optimizer weights;
* ``h5_format``: Keras 2's h5 layout (attributes, weight groups, model
  files) and weights read back into layers;
* ``file_io``: atomic writes and stale temporary files, the integrity
  header, opening and sniffing files;
* ``h5_probe``: HDF5 content aslnet did not write, read first in a
  child process with time and memory limits;
* ``keras3_format``: Keras 3's .keras archive and state-tree h5 layout
  (weights and optimizer variables);
* ``keras3_config``: Keras 3's config JSON to and from ``serialization``'s
  form.
"""
import importlib

from .serialization import register_model_class

__all__ = ["save_model", "load_model", "save_weights", "load_weights", "ModelFileError",
           "register_model_class"]

# Loaded on first use, with h5py (about 0.15 s): aslnet.models registers its
# classes here when ``import aslnet`` runs, which should not pay for files.
_LAZY = {"save_model": "saving_api", "load_model": "saving_api",
         "save_weights": "saving_api", "load_weights": "saving_api",
         "ModelFileError": "file_io"}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
