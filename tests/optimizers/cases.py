"""The optimizer x option cases the update tests run (Keras 3 constructor arguments), and
a tiny C network whose gradients the test chooses."""

import numpy as np

from aslnet import _core

LR = 0.05
STEPS = 10

# epsilon 0.5 / 0.1 in some cases: large enough that its placement (inside or outside
# the square root, added to v or to sqrt(v)) moves the weights far beyond rounding.
CASES = [
    ("sgd", {}),
    ("sgd", {"momentum": 0.9}),
    ("sgd", {"momentum": 0.9, "nesterov": True, "weight_decay": 0.2}),
    ("sgd", {"momentum": 0.5, "clipnorm": 0.5}),
    ("rmsprop", {}),
    ("rmsprop", {"rho": 0.5, "epsilon": 0.5, "weight_decay": 0.2}),
    ("rmsprop", {"momentum": 0.5, "clipvalue": 0.3}),
    ("rmsprop", {"centered": True, "epsilon": 0.1}),
    ("rmsprop", {"centered": True, "momentum": 0.5, "global_clipnorm": 1.0}),
    ("adam", {}),
    ("adam", {"epsilon": 0.5, "amsgrad": True}),
    ("adam", {"clipnorm": 0.5}),
    ("adam", {"global_clipnorm": 1.0, "beta_1": 0.5, "beta_2": 0.7}),
    ("adam", {"clipnorm": 100.0}),                  # a clip that never acts
    ("adamw", {"weight_decay": 0.1}),
    ("adamw", {"weight_decay": 0.5, "amsgrad": True, "clipvalue": 0.3}),
    ("adagrad", {}),
    ("adagrad", {"initial_accumulator_value": 1.0, "epsilon": 0.5, "weight_decay": 0.2}),
    ("adagrad", {"global_clipnorm": 1.0}),
    ("nadam", {}),
    ("nadam", {"epsilon": 0.5, "clipvalue": 0.3}),
    ("nadam", {"beta_1": 0.5, "weight_decay": 0.2, "clipnorm": 0.5}),
]


def case_id(case):
    kind, cfg = case
    return kind + "".join(f"-{k}={v}" for k, v in cfg.items())


def tiny_net(seed=0):
    """Dense(3) -> Dense(2) on 4 features, random weights: 4 trainable parameters of
    different sizes (global_clipnorm spans them)."""
    rng = np.random.default_rng(seed)
    net = _core.Net((1, 1, 4))
    net.add("dense", units=3)
    net.add("dense", units=2)
    for i in range(net.num_layers):
        for j, info in enumerate(net.params(i)):
            net.set_param(i, j, rng.normal(0, 0.5, info["shape"]).astype(np.float32))
    return net, rng


def keys(net):
    return [(i, j) for i in range(net.num_layers) for j in range(len(net.params(i)))]


def backward(net, rng):
    """A backward with random inputs and output gradients: {(i, j): float32 gradient}."""
    x = rng.normal(size=(6, 1, 1, 4)).astype(np.float32)
    y = net.forward(x, training=True)
    net.backward(rng.normal(size=y.shape).astype(np.float32))
    return {k: net.grad(*k) for k in keys(net)}
