"""The registry of model classes (aslnet.saving does not import aslnet.models:
the model classes register themselves, and a model's kind is the registered
class nearest in its MRO)."""
import subprocess
import sys

import h5py
import pytest

import aslnet
from aslnet import layers as L
from aslnet.models import Model, Sequential, load_model
from aslnet.saving import register_model_class, serialization


class MySequential(Sequential):
    pass


class MyModel(Model):
    pass


@pytest.fixture(autouse=True)
def _fresh_names():
    aslnet.clear_session()
    yield
    aslnet.clear_session()


def test_aslnet_registers_its_model_classes():
    assert serialization._MODEL_CLASSES == {"Functional": Model, "Sequential": Sequential}


@pytest.mark.parametrize("cls, kind", [(Model, "Functional"), (MyModel, "Functional"),
                                       (Sequential, "Sequential"),
                                       (MySequential, "Sequential")])
def test_a_subclass_saves_as_its_registered_base(tmp_path, cls, kind):
    if issubclass(cls, Sequential):
        model = cls([L.Input((4,)), L.Dense(2, name="d")])
    else:
        inp = L.Input((4,))
        model = cls(inp, L.Dense(2, name="d")(inp))
    assert serialization.model_kind(model) == kind
    model.save(tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r") as f:
        assert f'"class_name": "{kind}"' in f.attrs["model_config"]
        # Keras's model.layers: a Sequential's leave out its input
        names = [n.decode() for n in f["model_weights"].attrs["layer_names"]]
    assert names == ([] if kind == "Sequential" else [model._layers[0].name]) + ["d"]
    assert type(load_model(tmp_path / "m.h5", compile=False)) is \
        (Sequential if kind == "Sequential" else Model)


def test_register_model_class_refuses_what_it_cannot_build():
    with pytest.raises(ValueError, match="kind must be one of .*'Functional', 'Sequential'.*"
                                         "got 'Subclassed'"):
        register_model_class("Subclassed", MyModel)
    with pytest.raises(TypeError, match="must be a class"):
        register_model_class("Functional", "Model")


def test_an_object_of_no_registered_class_is_named():
    with pytest.raises(TypeError, match="dict is not an aslnet model class"):
        serialization.model_kind({})


def test_without_registered_classes_loading_says_what_to_import(tmp_path, monkeypatch):
    inp = L.Input((4,))
    Model(inp, L.Dense(2)(inp)).save(tmp_path / "m.h5")
    monkeypatch.setattr(serialization, "_MODEL_CLASSES", {})
    with pytest.raises(RuntimeError, match="no model class registered for 'Functional': "
                                           "import aslnet"):
        load_model(tmp_path / "m.h5")


def test_import_aslnet_does_not_load_h5py():
    """The registration runs at ``import aslnet``; the file code (and h5py,
    about 0.15 s to import) loads when a file is first saved or loaded."""
    code = ("import sys, aslnet; assert 'h5py' not in sys.modules, 'h5py'; "
            "from aslnet.saving import ModelFileError, save_model; "
            "assert 'h5py' in sys.modules and issubclass(ModelFileError, OSError)")
    subprocess.run([sys.executable, "-c", code], check=True)
