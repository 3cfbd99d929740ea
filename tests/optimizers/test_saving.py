"""Each optimizer's state and config saved in Keras 2's h5 layout (tf.keras 2.x
``optimizer_weights``: ``<Class>/iter:0``, then each slot of each trainable weight,
slot by slot, under tf.keras's slot names) and loaded back: equal state, and training
continues bit for bit as the original.  Keras 2 files of these optimizers (configs as
tf.keras 2.6 and 2.11+ write them) load."""

import json

import h5py
import numpy as np
import pytest

from aslnet import optimizers as O
from aslnet.models import load_model
from tests.model_fixtures import data, small_model

OPTIMIZERS = [
    (O.SGD(0.05, momentum=0.9, nesterov=True), "SGD", ["momentum"]),
    (O.SGD(0.05), "SGD", []),
    (O.RMSprop(0.01, momentum=0.5, centered=True), "RMSprop", ["rms", "momentum", "mg"]),
    (O.RMSprop(0.01, centered=True), "RMSprop", ["rms", "mg"]),
    (O.Adam(0.01, amsgrad=True, clipnorm=1.0), "Adam", ["m", "v", "vhat"]),
    (O.AdamW(0.01, weight_decay=0.1), "AdamW", ["m", "v"]),
    (O.Adagrad(0.01, initial_accumulator_value=0.5), "Adagrad", ["accumulator"]),
    (O.Nadam(O.schedules.ExponentialDecay(0.01, 2, 0.5)), "Nadam", ["m", "v"]),
]


def state_equal(a, b):
    sa, sb = a.get_optimizer_state(), b.get_optimizer_state()
    return sa["iterations"] == sb["iterations"] and sa["slots"].keys() == sb["slots"].keys() \
        and all(np.array_equal(sa["slots"][k], sb["slots"][k]) for k in sa["slots"])


@pytest.mark.parametrize("optimizer, class_name, slots", OPTIMIZERS,
                         ids=[f"{o[1]}-{'-'.join(o[2])}" for o in OPTIMIZERS])
def test_state_round_trip(tmp_path, optimizer, class_name, slots):
    x, y = data()
    model = small_model()
    model.compile(optimizer, "categorical_crossentropy")
    for _ in range(3):
        model.train_on_batch(x, y)
    model.save(tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r") as f:
        names = [n.decode() for n in f["optimizer_weights"].attrs["weight_names"]]
        config = json.loads(f.attrs["training_config"])["optimizer_config"]
    trainable = [v.name[:-2] for v in model.trainable_weights]
    scalars = [f"{class_name}/momentum_cache:0"] if class_name == "Nadam" else []
    assert names == [f"{class_name}/iter:0"] + scalars + [
        f"{class_name}/{w}/{s}:0" for s in slots for w in trainable]
    assert config["class_name"] == class_name and config["config"]["name"] == class_name
    loaded = load_model(tmp_path / "m.h5")
    assert type(loaded.optimizer) is type(optimizer)
    mine = {k: v for k, v in optimizer.get_config().items() if k != "name"}
    theirs = {k: v for k, v in loaded.optimizer.get_config().items() if k != "name"}
    assert theirs == mine
    assert state_equal(model, loaded) and loaded.optimizer.iterations == 3
    for _ in range(2):
        model.train_on_batch(x, y)
        loaded.train_on_batch(x, y)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), loaded.get_weights()))


KERAS2_CONFIGS = {
    # tf.keras 2.6 (OptimizerV2)
    "RMSprop": {"name": "RMSprop", "learning_rate": 0.001, "decay": 0.0, "rho": 0.9,
                "momentum": 0.0, "epsilon": 1e-07, "centered": False},
    "Adagrad": {"name": "Adagrad", "learning_rate": 0.01, "decay": 0.0,
                "initial_accumulator_value": 0.1, "epsilon": 1e-07},
    "Nadam": {"name": "Nadam", "learning_rate": 0.002, "decay": 0.004, "beta_1": 0.9,
              "beta_2": 0.999, "epsilon": 1e-07},
    "SGD": {"name": "SGD", "learning_rate": {"class_name": "ExponentialDecay", "config": {
        "initial_learning_rate": 0.1, "decay_steps": 100, "decay_rate": 0.96,
        "staircase": True, "name": None}}, "decay": 0.0, "momentum": 0.9, "nesterov": True,
        "clipnorm": 1.0},
    # tf.keras 2.11+ (the new optimizers)
    "AdamW": {"name": "AdamW", "weight_decay": 0.004, "clipnorm": None,
              "global_clipnorm": None, "clipvalue": None, "use_ema": False,
              "ema_momentum": 0.99, "ema_overwrite_frequency": None, "jit_compile": True,
              "is_legacy_optimizer": False, "learning_rate": 0.001, "beta_1": 0.9,
              "beta_2": 0.999, "epsilon": 1e-07, "amsgrad": False},
}


@pytest.mark.parametrize("class_name", sorted(KERAS2_CONFIGS))
def test_keras2_configs_load(tmp_path, class_name):
    """A Keras 2 file's training_config (its optimizer_config replaced by what tf.keras
    wrote for that optimizer) compiles the loaded model with that optimizer."""
    x, y = data()
    model = small_model()
    model.compile("adam", "categorical_crossentropy")
    model.save(tmp_path / "m.h5", include_optimizer=True)
    with h5py.File(tmp_path / "m.h5", "r+") as f:
        tc = json.loads(f.attrs["training_config"])
        tc["optimizer_config"] = {"class_name": class_name,
                                  "config": KERAS2_CONFIGS[class_name]}
        f.attrs["training_config"] = json.dumps(tc)
    loaded = load_model(tmp_path / "m.h5")
    opt = loaded.optimizer
    assert type(opt).__name__ == class_name
    want = dict(KERAS2_CONFIGS[class_name])
    want.pop("name")
    lr = want.pop("learning_rate")
    if isinstance(lr, dict):
        assert type(opt._learning_rate).__name__ == lr["class_name"]
        assert opt._learning_rate.get_config() == lr["config"]
    else:
        assert opt.learning_rate == lr
    for key, value in want.items():
        if key in ("decay", "weight_decay", "clipnorm", "momentum", "rho", "epsilon",
                   "centered", "nesterov", "beta_1", "beta_2", "initial_accumulator_value",
                   "amsgrad", "clipvalue", "global_clipnorm"):
            assert getattr(opt, key) == value, key
    loaded.train_on_batch(x, y)


def test_keras2_nadam_weights_load(tmp_path):
    """A Keras 2 Nadam file carries ``Nadam/momentum_cache:0`` after ``iter``: it loads
    (the product follows from the step count here) and the slots come back."""
    x, y = data()
    model = small_model()
    model.compile(O.Nadam(0.01), "categorical_crossentropy")
    model.train_on_batch(x, y)
    model.save(tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r+") as f:
        cache = f["optimizer_weights"]["Nadam/momentum_cache:0"]
        # tf.keras 2's product after one step: beta_1 (1 - 0.5 * 0.96^0.004)
        assert cache[()] == np.float32(0.9 * (1 - 0.5 * 0.96 ** 0.004))
    loaded = load_model(tmp_path / "m.h5")
    assert state_equal(model, loaded)


def test_mismatched_state_warns_and_starts_fresh(tmp_path):
    """A file whose slots do not fit the optimizer (RMSprop's centered flag changed by
    hand) warns as tf.keras and keeps a fresh optimizer."""
    x, y = data()
    model = small_model()
    model.compile(O.RMSprop(0.01), "categorical_crossentropy")
    model.train_on_batch(x, y)
    model.save(tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r+") as f:
        tc = json.loads(f.attrs["training_config"])
        tc["optimizer_config"]["config"]["centered"] = True
        f.attrs["training_config"] = json.dumps(tc)
    with pytest.warns(UserWarning, match="freshly initialized optimizer"):
        loaded = load_model(tmp_path / "m.h5")
    assert loaded.optimizer.centered and loaded.optimizer.iterations == 0
