"""Learning-rate schedules against their formulas in float64 (Keras 3's
learning_rate_schedule.py, written out independently; no TensorFlow): float32 evaluation
of a few operations is within ~1e-6 relative.  And the learning rate the C core gets at
each step: the schedule's value at ``iterations`` (Keras's step), Keras 2's ``decay``."""

import math

import numpy as np
import pytest

import aslnet
from aslnet.optimizers import SGD, Adam, schedules as S
from tests.model_fixtures import data, small_model


def cosine(step, init, ds, alpha=0.0, target=None, ws=0):
    if target is None:
        s = min(step, ds)
        return init * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * s / ds)) + alpha)
    s = min(step, ds + ws)
    if s < ws:
        return (target - init) * s / ws + init
    return target * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * (s - ws) / ds)) + alpha)


CASES = [
    (S.ExponentialDecay(0.1, 3, 0.5), lambda s: 0.1 * 0.5 ** (s / 3)),
    (S.ExponentialDecay(0.1, 3, 0.5, staircase=True), lambda s: 0.1 * 0.5 ** (s // 3)),
    (S.InverseTimeDecay(0.1, 2, 0.7), lambda s: 0.1 / (1 + 0.7 * s / 2)),
    (S.InverseTimeDecay(0.1, 2, 0.7, True), lambda s: 0.1 / (1 + 0.7 * (s // 2))),
    (S.PiecewiseConstantDecay([2, 5], [0.1, 0.05, 0.01]),
     lambda s: 0.1 if s <= 2 else 0.05 if s <= 5 else 0.01),
    (S.PolynomialDecay(0.1, 6, power=2.0),
     lambda s: (0.1 - 1e-4) * (1 - min(s, 6) / 6) ** 2 + 1e-4),
    (S.PolynomialDecay(0.1, 4, 0.01, 0.5, cycle=True),
     lambda s: (0.1 - 0.01) * (1 - s / (4 * max(1, math.ceil(s / 4)))) ** 0.5 + 0.01),
    (S.CosineDecay(0.1, 8), lambda s: cosine(s, 0.1, 8)),
    (S.CosineDecay(0.1, 8, alpha=0.1), lambda s: cosine(s, 0.1, 8, 0.1)),
    (S.CosineDecay(0.0, 8, alpha=0.05, warmup_target=0.2, warmup_steps=4),
     lambda s: cosine(s, 0.0, 8, 0.05, 0.2, 4)),
]


@pytest.mark.parametrize("schedule, formula", CASES, ids=lambda c: type(c).__name__
                         if isinstance(c, S.LearningRateSchedule) else "")
def test_schedule_formula(schedule, formula):
    for step in range(20):
        np.testing.assert_allclose(float(schedule(step)), formula(step), rtol=2e-6,
                                   atol=1e-9, err_msg=f"step {step}")
    clone = type(schedule).from_config(schedule.get_config())
    assert [float(clone(s)) for s in range(20)] == [float(schedule(s)) for s in range(20)]
    assert S.deserialize(S.serialize(schedule)).get_config() == schedule.get_config()


@pytest.mark.parametrize("make, match", [
    (lambda: S.ExponentialDecay(0.1, 0, 0.5), "decay_steps"),
    (lambda: S.CosineDecay(0.1, -1), "decay_steps"),
    (lambda: S.PiecewiseConstantDecay([1, 2], [0.1]), "boundaries"),
    (lambda: S.PolynomialDecay("fast", 10), "initial_learning_rate"),
    (lambda: S.deserialize({"class_name": "CosineDecayRestarts", "config": {}}), "aslnet has"),
])
def test_bad_schedules(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_core_gets_the_schedules_rate_each_step():
    """SGD with a rate of 0.1 for steps 0 and 1 and 0 from step 2 (PiecewiseConstant:
    step <= boundary): the first two train_on_batch calls move the weights, later ones
    do not, so the rate is evaluated per step from ``iterations`` as in Keras."""
    x, y = data()
    model = small_model()
    model.compile(SGD(S.PiecewiseConstantDecay([1], [0.1, 0.0])), "categorical_crossentropy")
    moved = []
    for _ in range(4):
        before = model.get_weights()
        model.train_on_batch(x, y)
        trained = model.layers[-1].get_weights()[0]
        moved.append(not np.array_equal(before[-2], trained))
    assert moved == [True, True, False, False]
    assert model.optimizer.iterations == 4
    assert float(model.optimizer.learning_rate) == 0.0          # Keras 3: value now
    assert model.optimizer.get_config()["learning_rate"]["class_name"] == \
        "PiecewiseConstantDecay"


def test_keras2_decay_and_lr():
    """Keras 2: lr / (1 + decay * iterations); ``lr=`` is learning_rate."""
    opt = SGD(lr=0.1, decay=0.5)
    assert opt.learning_rate == 0.1 and opt.lr == 0.1
    assert [opt._step_learning_rate(t) for t in range(3)] == [0.1, 0.1 / 1.5, 0.1 / 2.0]
    sched = Adam(S.ExponentialDecay(0.1, 1, 0.5), decay=1.0)
    assert sched._step_learning_rate(2) == pytest.approx(0.1 * 0.25 / 3, rel=1e-6)
    assert SGD.from_config(opt.get_config())._step_learning_rate(2) == 0.05


def test_lr_callbacks_refuse_a_schedule():
    """LearningRateScheduler and ReduceLROnPlateau set the rate: with a schedule they
    refuse before the first epoch, naming the way out (Keras 3 refuses the setting)."""
    x, y = data()
    for cb in (aslnet.callbacks.LearningRateScheduler(lambda e, lr: lr * 0.5),
               aslnet.callbacks.ReduceLROnPlateau(monitor="loss")):
        model = small_model()
        model.compile(Adam(S.CosineDecay(1e-3, 10)), "categorical_crossentropy")
        w0 = model.get_weights()
        with pytest.raises(TypeError, match="float `learning_rate`"):
            model.fit(x, y, epochs=2, verbose=0, callbacks=[cb])
        assert all(np.array_equal(a, b) for a, b in zip(w0, model.get_weights()))
