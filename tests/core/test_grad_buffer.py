"""``Net.grad_buffer`` and ``train_step(apply=False)``: the split step data-parallel
training (aslnet.distribution) runs, equal bit for bit to the one-call step."""
import numpy as np
import pytest

from aslnet import _core

from .test_network import _small_net, _weights


def _labels(rng, n, classes=5):
    return np.eye(classes, dtype=np.float32)[rng.integers(0, classes, n)].reshape(n, 1, 1, -1)


def _slots(net, layers=None):
    """(i, j) -> (offset, size) of each trainable weight's slot, in the buffer's order
    (layer, then parameter; each slot starts on a 16-float boundary); ``layers``: the
    trainable layers (default all)."""
    out, off = {}, 0
    for (i, j) in sorted(_weights(net)):
        if layers is not None and i not in layers:
            continue
        size = int(np.prod(net.params(i)[j]["shape"]))
        out[(i, j)] = (off, size)
        off += -(-size // 16) * 16
    return out, off


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_split_step_equals_train_step(optimizer):
    a, x, rng = _small_net(seed=1)
    b, _, _ = _small_net(seed=1)
    y = _labels(rng, len(x))
    for net in (a, b):
        net.set_optimizer(optimizer, learning_rate=0.05)
    for _ in range(3):
        la, pa = a.train_step(x, y)
        lb, pb, has_grads = b.train_step(x, y, apply=False)
        assert has_grads
        view = b.grad_buffer()
        slots, total = _slots(b)
        assert view.dtype == np.float32 and view.shape == (total,)
        for (i, j), (off, size) in slots.items():      # the view holds the gradients
            np.testing.assert_array_equal(view[off:off + size], b.grad(i, j).reshape(-1))
        b.apply_gradients()
        assert (la, b.iterations) == (lb, a.iterations)
        np.testing.assert_array_equal(pa, pb)
    for k, w in _weights(a).items():
        np.testing.assert_array_equal(w, _weights(b)[k])


def test_the_view_is_what_the_update_reads():
    net, x, rng = _small_net(seed=2)
    net.set_optimizer("sgd", learning_rate=1.0)
    before = _weights(net)
    net.train_step(x, _labels(rng, len(x)), apply=False)
    view = net.grad_buffer()
    view[:] = 0.0
    slots, _ = _slots(net)
    (i, j), (off, size) = next(iter(slots.items()))
    view[off] = 0.5                          # one gradient element, changed in place
    net.apply_gradients()
    after = _weights(net)
    delta = (before[(i, j)] - after[(i, j)]).reshape(-1)
    assert delta[0] == np.float32(0.5) and not delta[1:].any()
    assert all(np.array_equal(before[k], after[k]) for k in before if k != (i, j))


def test_buffer_follows_the_trainable_layers():
    net, x, rng = _small_net(seed=3)
    net.set_optimizer("sgd", learning_rate=0.1)
    y = _labels(rng, len(x))
    net.train_step(x, y, apply=False)
    full = net.grad_buffer().size
    for i in range(net.num_layers - 1):           # only the Dense trains now
        net.set_trainable(i, False)
    net.train_step(x, y, apply=False)
    small = net.grad_buffer()
    assert small.size < full and small.size == _slots(net, {net.num_layers - 1})[1]
    np.testing.assert_array_equal(small[:net.grad(net.num_layers - 1, 0).size],
                                  net.grad(net.num_layers - 1, 0).reshape(-1))
    for i in range(net.num_layers - 1):           # trainable again: reallocated, packed
        net.set_trainable(i, True)
    net.train_step(x, y, apply=False)
    assert net.grad_buffer().size == full
    net.apply_gradients()


def test_view_keeps_the_net_alive():
    net, x, rng = _small_net(seed=4)
    net.set_optimizer("sgd", learning_rate=0.1)
    net.train_step(x, _labels(rng, len(x)), apply=False)
    view = net.grad_buffer()
    del net
    assert np.isfinite(view).all()              # the memory is still the Net's


def test_nothing_trainable_reports_no_gradients():
    net, x, rng = _small_net(seed=5)
    net.set_optimizer("sgd", learning_rate=0.1)
    for i in range(net.num_layers):
        net.set_trainable(i, False)
    loss, _, has_grads = net.train_step(x, _labels(rng, len(x)), apply=False)
    assert not has_grads and np.isfinite(loss)
    assert net.grad_buffer().size == 0
