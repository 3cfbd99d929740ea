"""Every optimizer x option of tests/optimizers/cases.py: the C core's weights after each
of 10 steps against Keras 3's optimizer (TensorFlow backend) fed the same gradients.
Both compute in float32 with their own operation order, so they differ by the rounding
argued in test_updates.py (<= 6e-6 of max(1, |w|) over 10 steps; 1e-5 asserted), plus
Keras's hyper-parameters taken as Python doubles where the core takes float32 (1 - beta_1
as a double rounded once vs 1 - float32(beta_1): 2.4e-7 relative, inside the bound).  The
schedules: each against Keras's value per step."""

import numpy as np
import pytest

from aslnet.optimizers import schedules as S
from tests.optimizers.cases import CASES, LR, STEPS, backward, case_id, keys, tiny_net
from tests.optimizers.test_updates import close

pytestmark = pytest.mark.keras
keras = pytest.importorskip("keras")


def keras_optimizer(kind, cfg):
    cls = {"sgd": "SGD", "rmsprop": "RMSprop", "adam": "Adam", "adamw": "AdamW",
           "adagrad": "Adagrad", "nadam": "Nadam"}[kind]
    return getattr(keras.optimizers, cls)(learning_rate=LR, **cfg)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_update_equals_keras(case):
    kind, cfg = case
    net, rng = tiny_net()
    net.set_optimizer(kind, learning_rate=LR, **cfg)
    ks = keys(net)
    variables = [keras.Variable(net.get_param(*k)) for k in ks]
    opt = keras_optimizer(kind, cfg)
    for step in range(1, STEPS + 1):
        grads = backward(net, rng)
        net.apply_gradients()
        opt.apply_gradients([(keras.ops.convert_to_tensor(grads[k]), v)
                             for k, v in zip(ks, variables)])
        for k, v in zip(ks, variables):
            close(net.get_param(*k), np.asarray(v.numpy()), f"step {step} weight {k}")


SCHEDULES = [
    ("ExponentialDecay", dict(initial_learning_rate=0.1, decay_steps=3, decay_rate=0.5)),
    ("ExponentialDecay", dict(initial_learning_rate=0.1, decay_steps=3, decay_rate=0.5,
                              staircase=True)),
    ("InverseTimeDecay", dict(initial_learning_rate=0.1, decay_steps=2, decay_rate=0.7)),
    ("InverseTimeDecay", dict(initial_learning_rate=0.1, decay_steps=2, decay_rate=0.7,
                              staircase=True)),
    ("PiecewiseConstantDecay", dict(boundaries=[2, 5], values=[0.1, 0.05, 0.01])),
    ("PolynomialDecay", dict(initial_learning_rate=0.1, decay_steps=6, power=2.0)),
    ("PolynomialDecay", dict(initial_learning_rate=0.1, decay_steps=4, end_learning_rate=0.01,
                             power=0.5, cycle=True)),
    ("CosineDecay", dict(initial_learning_rate=0.1, decay_steps=8)),
    ("CosineDecay", dict(initial_learning_rate=0.1, decay_steps=8, alpha=0.1)),
    ("CosineDecay", dict(initial_learning_rate=0.0, decay_steps=8, warmup_target=0.2,
                         warmup_steps=4, alpha=0.05)),
]


@pytest.mark.parametrize("name, cfg", SCHEDULES, ids=[s[0] + str(i) for i, s in
                                                       enumerate(SCHEDULES)])
def test_schedule_equals_keras(name, cfg):
    """Both evaluate in float32 (a few operations, one cos/pow: within a few ulps):
    rtol 1e-6."""
    ours, theirs = getattr(S, name)(**cfg), getattr(keras.optimizers.schedules, name)(**cfg)
    for step in range(15):
        want = float(np.asarray(theirs(step)))
        np.testing.assert_allclose(float(ours(step)), want, rtol=1e-6, atol=1e-9,
                                   err_msg=f"{name} step {step}")
    assert ours.get_config() == theirs.get_config()
