"""Every optimizer x option: the C core's update (``Net.apply_gradients``) against the
float64 NumPy twin of Keras 3's equations (tests/optimizers/twin.py) for 10 steps, weights
and every slot; against Keras 3 itself in test_keras_parity.py.

Tolerance: one step is about ten float32 operations per element, each rounding by at most
eps32/2 = 6e-8 relative to the values involved, which here are O(1) (weights ~0.5, slots,
increments <= lr * O(10)).  Rounding errors of slots carry into later steps without growth
(every rule is a contraction or a sum of them: momentum <= 1, rho < 1, Adagrad's sum); over
10 steps that stays below 10 * 10 * 6e-8 = 6e-6 of max(1, |value|).  1e-5 holds that with
margin, and any formula error (epsilon placement with epsilon 0.5, bias correction, a
missed clip or decay) moves the weights by lr * O(0.1) = 5e-3 or more."""

import numpy as np
import pytest

from tests.optimizers.cases import CASES, LR, STEPS, backward, case_id, keys, tiny_net
from tests.optimizers.twin import Twin, slot_names

TOL = 1e-5


def close(got, want, what):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    err = np.abs(got - want).max() / max(1.0, np.abs(want).max())
    assert err <= TOL, f"{what}: max error {err:.3g}"


def core_config(kind, cfg):
    return dict(cfg, learning_rate=LR)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_update_equals_numpy_twin(case):
    kind, cfg = case
    net, rng = tiny_net()
    net.set_optimizer(kind, **core_config(kind, cfg))
    ks = keys(net)
    twin = Twin(kind, cfg, [net.get_param(*k) for k in ks])
    names = slot_names(kind, cfg)
    assert net.num_slots == len(names)
    for step in range(1, STEPS + 1):
        grads = backward(net, rng)
        net.apply_gradients()
        twin.step([grads[k] for k in ks], LR)
        assert net.iterations == step
        for n, k in enumerate(ks):
            close(net.get_param(*k), twin.w[n], f"step {step} weight {k}")
            for s, name in enumerate(names):
                close(net.slot(*k, s), twin.slots[name][n], f"step {step} {name} of {k}")
            assert net.slot(*k, len(names)) is None


def test_global_clipnorm_is_global():
    """global_clipnorm scales all gradients by one factor (norm over all of them), where
    clipnorm scales each by its own: after one SGD step the two differ, and the global
    step is exactly -lr * g * clip / global_norm."""
    clip = 0.5
    nets = {}
    for option in ("clipnorm", "global_clipnorm"):
        net, rng = tiny_net(seed=3)
        w0 = {k: net.get_param(*k).astype(np.float64) for k in keys(net)}
        net.set_optimizer("sgd", learning_rate=1.0, **{option: clip})
        g = {k: v.astype(np.float64) for k, v in backward(net, rng).items()}
        net.apply_gradients()
        nets[option] = {k: w0[k] - net.get_param(*k) for k in keys(net)}     # the steps
    norm = np.sqrt(sum(np.sum(v * v) for v in g.values()))
    assert norm > clip
    for k in g:
        close(nets["global_clipnorm"][k], g[k] * clip / norm, f"global step {k}")
        close(nets["clipnorm"][k], g[k] * clip / max(np.linalg.norm(g[k]), clip),
              f"per-weight step {k}")


def test_frozen_layer_gets_no_decay_and_no_slot():
    """Weight decay and clipping reach only the weights the step trains."""
    net, rng = tiny_net()
    net.set_trainable(0, False)
    frozen = [net.get_param(0, j) for j in range(2)]
    net.set_optimizer("adamw", learning_rate=0.1, weight_decay=0.5, global_clipnorm=1.0)
    for _ in range(3):
        backward(net, rng)
        net.apply_gradients()
    for j in range(2):
        np.testing.assert_array_equal(net.get_param(0, j), frozen[j])
        assert net.slot(0, j, 0) is None


def test_layout_change_drops_state_same_layout_keeps_it():
    net, rng = tiny_net()
    net.set_optimizer("adagrad", initial_accumulator_value=0.25)
    backward(net, rng)
    net.apply_gradients()
    acc = net.slot(0, 0, 0)
    assert (acc > 0.25).all()
    net.set_optimizer("adagrad", initial_accumulator_value=0.25, learning_rate=0.5)
    np.testing.assert_array_equal(net.slot(0, 0, 0), acc)      # same layout: kept
    net.set_optimizer("rmsprop")
    np.testing.assert_array_equal(net.slot(0, 0, 0), 0)        # another: fresh (zeros)
    net.set_optimizer("adagrad", initial_accumulator_value=0.25)
    np.testing.assert_array_equal(net.slot(0, 0, 0), 0.25)     # fresh accumulator


@pytest.mark.parametrize("kwargs, match", [
    (dict(learning_rate=-1.0), "learning_rate"),
    (dict(weight_decay=-0.1), "weight_decay"),
    (dict(clipnorm=-1.0), "clipnorm"),
    (dict(clipnorm=1.0, clipvalue=1.0), "only one"),
    (dict(clipvalue=float("inf")), "clipvalue"),
])
def test_core_refuses_bad_common_arguments(kwargs, match):
    net, _ = tiny_net()
    with pytest.raises(ValueError, match=match):
        net.set_optimizer("adam", **kwargs)


@pytest.mark.parametrize("kind, kwargs, match", [
    ("rmsprop", dict(rho=1.0), "rho"),
    ("rmsprop", dict(rho=-0.1), "rho"),
    ("rmsprop", dict(momentum=1.5), "momentum"),
    ("nadam", dict(beta_1=1.0), "beta"),
    ("adagrad", dict(initial_accumulator_value=-1.0), "initial_accumulator_value"),
    ("adagrad", dict(epsilon=0.0), "epsilon"),
    ("adadelta", {}, "unknown optimizer"),
])
def test_core_refuses_bad_kind_arguments(kind, kwargs, match):
    net, _ = tiny_net()
    with pytest.raises(ValueError, match=match):
        net.set_optimizer(kind, **kwargs)


@pytest.mark.parametrize("kind, cfg", [("rmsprop", {"centered": True, "momentum": 0.5}),
                                       ("nadam", {"global_clipnorm": 1.0}),
                                       ("adam", {"clipnorm": 1.0, "weight_decay": 0.1})])
def test_same_steps_with_any_thread_count(kind, cfg):
    """A weight of 256 x 256 (above the size from which updates run on all threads): the
    steps are elementwise and the clipping norms one-threaded, so 1 and 2 threads give
    bit-identical weights and slots."""
    from aslnet import _core
    results = []
    for threads in (1, 2):
        rng = np.random.default_rng(5)
        net = _core.Net((1, 1, 256))
        net.add("dense", units=256)
        net.set_num_threads(threads)
        net.set_param(0, 0, rng.normal(0, 0.1, (256, 256)).astype(np.float32))
        net.set_optimizer(kind, learning_rate=0.01, **cfg)
        for _ in range(3):
            y = net.forward(rng.normal(size=(4, 1, 1, 256)).astype(np.float32), training=True)
            net.backward(rng.normal(size=y.shape).astype(np.float32))
            net.apply_gradients()
        results.append([net.get_param(0, 0)] + [net.slot(0, 0, k)
                                                for k in range(net.num_slots)])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
