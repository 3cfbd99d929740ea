"""The Python side: Keras 3's constructors and names, ``get``, configs, bad arguments with
clear errors, and ``compile`` with every optimizer training a model."""

import numpy as np
import pytest

import aslnet
from aslnet import optimizers as O
from tests.model_fixtures import data, small_model

ALL = [O.SGD, O.RMSprop, O.Adam, O.AdamW, O.Adagrad, O.Nadam]


@pytest.mark.parametrize("name", ["sgd", "rmsprop", "adam", "adamw", "adagrad", "nadam",
                                  "RMSprop", "Adam"])
def test_get_by_name(name):
    opt = O.get(name)
    assert type(opt).__name__.lower() == name.lower()
    assert opt.name == name.lower()


def test_keras3_defaults():
    """Keras 3's defaults (keras/src/optimizers/*.py)."""
    assert O.SGD().learning_rate == 0.01 and O.SGD().momentum == 0.0
    r = O.RMSprop()
    assert (r.learning_rate, r.rho, r.momentum, r.epsilon, r.centered) == (
        0.001, 0.9, 0.0, 1e-7, False)
    assert O.AdamW().weight_decay == 0.004
    a = O.Adagrad()
    assert (a.initial_accumulator_value, a.epsilon) == (0.1, 1e-7)
    n = O.Nadam()
    assert (n.beta_1, n.beta_2, n.epsilon) == (0.9, 0.999, 1e-7)


@pytest.mark.parametrize("cls", ALL)
def test_config_round_trip(cls):
    opt = cls(learning_rate=0.02, clipnorm=1.5, name="mine")
    cfg = opt.get_config()
    assert cfg["name"] == "mine" and cfg["learning_rate"] == 0.02 and cfg["clipnorm"] == 1.5
    again = cls.from_config(cfg)
    assert again.get_config() == cfg
    assert O.get(O.serialize(opt)).get_config() == cfg
    sched = cls(O.schedules.ExponentialDecay(0.1, 10, 0.9))
    assert cls.from_config(sched.get_config()).get_config() == sched.get_config()


@pytest.mark.parametrize("make, error, match", [
    (lambda: O.SGD(learning_rate=-0.1), ValueError, "learning_rate"),
    (lambda: O.Adam(learning_rate="fast"), ValueError, "learning_rate"),
    (lambda: O.SGD(momentum=1.5), ValueError, "momentum"),
    (lambda: O.RMSprop(rho=1.0), ValueError, "rho"),
    (lambda: O.RMSprop(rho=-0.5), ValueError, "rho"),
    (lambda: O.Adam(beta_1=1.0), ValueError, "beta_1"),
    (lambda: O.Nadam(beta_2=2.0), ValueError, "beta_2"),
    (lambda: O.Adam(epsilon=0.0), ValueError, "epsilon"),
    (lambda: O.Adagrad(initial_accumulator_value=-1), ValueError, "initial_accumulator"),
    (lambda: O.AdamW(weight_decay=None), ValueError, "weight_decay"),
    (lambda: O.SGD(weight_decay=-1.0), ValueError, "weight_decay"),
    (lambda: O.Adam(clipnorm=1.0, clipvalue=1.0), ValueError, "Only one of"),
    (lambda: O.Adam(global_clipnorm=-1.0), ValueError, "global_clipnorm"),
    (lambda: O.Adam(use_ema=True), NotImplementedError, "use_ema"),
    (lambda: O.Adam(beta1=0.5), TypeError, "unexpected"),
    (lambda: O.get("adadelta"), ValueError, "Unknown optimizer 'adadelta'; aslnet has"),
    (lambda: O.get({"class_name": "Ftrl", "config": {}}), ValueError, "Unknown optimizer"),
])
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("optimizer", ["sgd", "rmsprop", "adam", "adamw", "adagrad", "nadam",
                                       O.RMSprop(0.01, momentum=0.5, centered=True,
                                                 clipnorm=1.0),
                                       O.Nadam(O.schedules.CosineDecay(0.01, 5),
                                               weight_decay=0.01)],
                         ids=lambda o: o if isinstance(o, str) else type(o).__name__)
def test_compile_and_fit_with_every_optimizer(optimizer):
    """compile(optimizer=...) takes every name (no more 'no RMSprop yet'); fit lowers the
    training loss of a small model on its one batch (full batch: each epoch's loss is that
    of the weights before its step)."""
    x, y = data()
    model = small_model()
    model.compile(optimizer=optimizer, loss="categorical_crossentropy")
    losses = model.fit(x, y, epochs=8, batch_size=24, verbose=0).history["loss"]
    assert model.optimizer.iterations == 8
    assert model.optimizer.iterations.numpy() == 8          # Keras's variable call
    assert losses[-1] < losses[0]


def test_learning_rate_behaves_as_keras():
    opt = O.RMSprop(0.01)
    opt.learning_rate = 0.005
    assert opt.learning_rate == 0.005 and opt.learning_rate.numpy() == np.float32(0.005)
    opt.learning_rate.assign(0.001)
    assert opt.lr == 0.001
    sched = O.Adam(O.schedules.InverseTimeDecay(0.1, 1, 1.0))
    assert sched.learning_rate == pytest.approx(0.1)                  # value at step 0
    with pytest.raises(TypeError, match="not settable"):
        sched.learning_rate = 0.5
    sched.learning_rate = O.schedules.ExponentialDecay(0.2, 1, 0.5)   # a schedule may replace
    assert sched.learning_rate == pytest.approx(0.2)


def test_aslnet_as_keras_imports():
    from aslnet.optimizers import RMSprop  # noqa: F401  (issue 14: was an ImportError)
    from aslnet.optimizers.schedules import CosineDecay, ExponentialDecay  # noqa: F401
    assert aslnet.optimizers.schedules.PiecewiseConstantDecay
