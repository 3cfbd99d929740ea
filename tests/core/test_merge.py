"""The C core's multiply and concatenate ops (csrc/merge.c) and the executor's
carrying of their second gradient, against a float64 NumPy twin whose
gradients are central finite differences.

The net: 1x1 conv A (the source), 1x1 conv B on A's output, the merge of B
(the chain's input) with A (the source, an earlier layer), a 1x1 conv C.
So the input gradient flows through both of the merge's paths, and the
parameter gradients of A are the sum of both: a merge that drops or
misroutes dx2 is off by a whole path.

Tolerances.  The C side is a float32 evaluation of the twin: each 1x1 conv
sums at most 7 products (~7 * 2^-24 relative to the magnitudes summed), the
merge is exact up to one rounding, and there are 3 convs: well under 1e-5 of
the largest value; we allow 1e-4 of the tensor's largest element.  The
twin's finite differences (h = 1e-6, float64) are exact to ~1e-9 relative
(the function is quadratic in x: central differences have no truncation
error beyond rounding, ~eps64 |f| / h)."""
import numpy as np
import pytest

_core = pytest.importorskip("aslnet._core")

RTOL = 1e-4
rng = np.random.default_rng(7)


def _conv1x1(x, w, b):
    return np.einsum("nhwc,cd->nhwd", x, w) + b


def _twin(x, params, kind, source_first):
    (wa, ba), (wb, bb), (wc, bc) = params
    a = _conv1x1(x, wa, ba)
    b = _conv1x1(a, wb, bb)
    if kind == "multiply":
        m = b * a
    else:
        m = np.concatenate([a, b] if source_first else [b, a], axis=-1)
    return _conv1x1(m, wc, bc)


def _net(kind, source_first, cin, ca, cb):
    net = _core.Net((3, 4, cin))
    net.add("conv2d", filters=ca, kernel_size=1)                       # 0: A (source)
    net.add("conv2d", filters=cb, kernel_size=1)                       # 1: B
    cfg = dict(source=0) if kind == "multiply" else dict(source=0, source_first=source_first)
    net.add(kind, **cfg)                                               # 2
    net.add("conv2d", filters=2, kernel_size=1)                        # 3: C
    return net


def _rel(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / max(np.abs(b).max(), 1e-30))


@pytest.mark.parametrize("kind,source_first", [("multiply", 0), ("concatenate", 0),
                                               ("concatenate", 1)])
def test_forward_and_gradients_match_finite_differences(kind, source_first):
    cin, ca = 3, 4
    cb = ca if kind == "multiply" else 2
    cm = ca if kind == "multiply" else ca + cb
    net = _net(kind, source_first, cin, ca, cb)
    shapes = [(cin, ca), (ca, cb), (cm, 2)]
    params = [(rng.standard_normal(s), rng.standard_normal(s[1])) for s in shapes]
    for i, (w, b) in zip((0, 1, 3), params):
        net.set_param(i, 0, w.reshape(1, 1, *w.shape).astype(np.float32))
        net.set_param(i, 1, b.astype(np.float32))
    x = rng.standard_normal((2, 3, 4, cin))
    r = rng.standard_normal((2, 3, 4, 2))

    y = net.forward(x.astype(np.float32), training=True)
    assert net.output_shape(2) == (3, 4, cm)
    assert _rel(y, _twin(x, params, kind, source_first)) < RTOL
    dx = net.backward(r.astype(np.float32), need_dx=True)

    def loss(xx, pp):
        return float((_twin(xx, pp, kind, source_first) * r).sum())

    h = 1e-6
    num_dx = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = h
        num_dx[idx] = (loss(x + e, params) - loss(x - e, params)) / (2 * h)
    assert _rel(dx, num_dx) < RTOL
    # the source's kernel: its gradient sums both paths
    wa = params[0][0]
    num_wa = np.zeros_like(wa)
    for idx in np.ndindex(wa.shape):
        e = np.zeros_like(wa)
        e[idx] = h
        plus = [(wa + e, params[0][1])] + params[1:]
        minus = [(wa - e, params[0][1])] + params[1:]
        num_wa[idx] = (loss(x, plus) - loss(x, minus)) / (2 * h)
    assert _rel(net.grad(0, 0).reshape(wa.shape), num_wa) < RTOL


def test_shape_errors_name_the_layers():
    net = _core.Net((3, 4, 2))
    net.add("conv2d", filters=4, kernel_size=1)
    net.add("conv2d", filters=3, kernel_size=1)
    with pytest.raises(ValueError, match=r"multiply \(layer 2\).*\(3, 4, 3\).*\(3, 4, 4\)"):
        net.add("multiply", source=0)
    net.add("max_pooling2d", kernel_size=2, strides=2)
    with pytest.raises(ValueError, match="concatenate.*one height and width"):
        net.add("concatenate", source=0)
    with pytest.raises(TypeError, match="'concatenate' layer needs source="):
        net.add("concatenate")
    with pytest.raises(ValueError, match="source must be the index of an earlier layer"):
        net.add("multiply", source=7)


def test_concatenate_on_a_net_of_any_size():
    net = _core.Net((None, None, 2))
    net.add("conv2d", filters=3, kernel_size=1)
    net.add("conv2d", filters=5, kernel_size=3, padding="same")
    net.add("concatenate", source=0, source_first=1)
    assert net.output_shape(2) == (None, None, 8)
    for i in (0, 1):
        for j, info in enumerate(net.params(i)):
            net.set_param(i, j, rng.standard_normal(info["shape"]).astype(np.float32))
    for size in ((5, 7), (9, 4)):
        x = rng.standard_normal((2, *size, 2)).astype(np.float32)
        a = net.forward(x, stop=1)
        b = net.forward(x, stop=2)
        y = net.forward(x)
        assert y.shape == (2, *size, 8)
        np.testing.assert_array_equal(y, np.concatenate([a, b], axis=-1))
