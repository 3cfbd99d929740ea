"""compile / fit / evaluate / predict: the training loop, data forms, callbacks, errors."""
import numpy as np
import pytest

import aslnet
from aslnet import layers as L
from aslnet.models import Model
from aslnet.optimizers import SGD, Adam

from tests.model_fixtures import _tiny, data, small_model


def test_fit_history_and_evaluate():
    model = small_model()
    x, y = data()
    model.compile(optimizer=Adam(1e-2), loss="categorical_crossentropy", metrics=["accuracy"])
    h = model.fit(x, y, batch_size=8, epochs=3, validation_data=(x, y), verbose=0)
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(h.history["loss"]) == 3 and h.epoch == [0, 1, 2]
    loss, acc = model.evaluate(x, y, verbose=0)
    assert loss == pytest.approx(h.history["val_loss"][-1], rel=1e-5)
    p = model.predict(x, verbose=0)
    ref = -np.mean(np.sum(y * np.log(np.clip(p, 1e-7, 1 - 1e-7)), axis=1))
    assert loss == pytest.approx(ref, rel=1e-5)
    assert acc == pytest.approx(np.mean(p.argmax(1) == y.argmax(1)))


def test_sparse_labels_equal_one_hot():
    x, y = data()
    a, b = small_model(), small_model()
    a.compile(SGD(0.1), "categorical_crossentropy")
    b.compile(SGD(0.1), "sparse_categorical_crossentropy")
    la = a.train_on_batch(x, y)
    lb = b.train_on_batch(x, y.argmax(1))
    assert la == lb
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_bad_input_gives_clear_errors():
    model = small_model()
    with pytest.raises(ValueError, match="batch axis"):
        model.predict(np.zeros((16, 16, 3), np.float32), verbose=0)
    with pytest.raises(ValueError, match="expects input shape"):
        model.predict(np.zeros((2, 8, 8, 3), np.float32), verbose=0)
    with pytest.raises(RuntimeError, match="compile"):
        model.fit(*data(), verbose=0)
    model.compile("adam", "categorical_crossentropy")
    with pytest.raises(ValueError, match="targets"):
        model.fit(data()[0], np.zeros((24, 5)), verbose=0)
    with pytest.raises(ValueError, match="Unsupported loss"):
        model.compile("adam", "hinge")
    # NaN inputs are computed, not crashed on, and show in the loss
    x, y = data()
    x[0, 0, 0, 0] = np.nan
    assert np.isnan(model.train_on_batch(x, y))


def test_compile_refuses_what_it_would_ignore():
    model = small_model()
    with pytest.raises(TypeError, match="metric"):
        model.compile("adam", "categorical_crossentropy", metric=["accuracy"])
    with pytest.raises(NotImplementedError, match="loss_weights"):
        model.compile("adam", "categorical_crossentropy", loss_weights=[2.0])
    model.compile("adam", "categorical_crossentropy", run_eagerly=False, jit_compile="auto")
    keras = pytest.importorskip("tensorflow").keras
    with pytest.raises(NotImplementedError, match="reduction"):
        model.compile("adam", keras.losses.CategoricalCrossentropy(reduction="sum"))
    model.compile("adam", keras.losses.CategoricalCrossentropy())
    assert model.loss == "categorical_crossentropy"


def test_steps_per_epoch_goes_on_where_the_last_epoch_stopped():
    """Keras: with steps_per_epoch below the data, each epoch takes the next batches
    (with SGD(0) the loss of batch k is -log softmax(b)[k], so it tells the batch)."""
    x = np.zeros((16, 4), np.float32)
    y = np.eye(4, dtype=np.float32)[np.repeat(np.arange(4), 4)]
    m = _tiny()
    m.compile(SGD(0.0), "categorical_crossentropy")
    h = m.fit(x, y, batch_size=4, steps_per_epoch=1, epochs=5, shuffle=False, verbose=0)
    logp = np.log(np.exp(np.arange(4)) / np.exp(np.arange(4)).sum())
    np.testing.assert_allclose(h.history["loss"], -logp[[0, 1, 2, 3, 0]], rtol=1e-5)


def test_generators_and_datasets_without_steps():
    x, y = data(12)
    model = small_model()
    model.compile(SGD(0.0), "categorical_crossentropy", metrics=["accuracy"])
    expected = model.evaluate(x, y, batch_size=4, verbose=0)

    def gen():
        for i in range(0, 12, 4):
            yield x[i:i + 4], y[i:i + 4]
    np.testing.assert_allclose(model.evaluate(gen(), verbose=0), expected, rtol=1e-6)
    assert model.predict((b for b, _ in gen()), verbose=0).shape == (12, 3)
    # a generator is one pass: the second epoch has no data -> warning, one epoch kept
    with pytest.warns(UserWarning, match="ran out of data"):
        h = model.fit(gen(), epochs=3, verbose=0)
    assert h.epoch == [0]
    tf = pytest.importorskip("tensorflow")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)        # re-iterable, len 3
    h = model.fit(ds, epochs=2, verbose=0)
    h2 = model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    np.testing.assert_allclose(h.history["loss"], h2.history["loss"], rtol=1e-6)
    np.testing.assert_allclose(model.predict(tf.constant(x), verbose=0),
                               model.predict(x, verbose=0))


def test_array_likes_are_arrays():
    torch = pytest.importorskip("torch")
    x, y = data(8)
    model = small_model()
    model.compile(SGD(0.0), "categorical_crossentropy")
    np.testing.assert_array_equal(model.predict(torch.from_numpy(x), verbose=0),
                                  model.predict(x, verbose=0))
    assert model.evaluate(torch.from_numpy(x), torch.from_numpy(y), verbose=0) == \
        model.evaluate(x, y, verbose=0)


def test_validation_data_forms_and_validation_split():
    x, y = data(20)
    model = small_model().freeze(upto=-1)         # fit changes nothing: SGD(0), frozen BN
    model.compile(SGD(0.0), "categorical_crossentropy")
    ref = model.evaluate(x[16:], y[16:], verbose=0)
    for vd in ((x[16:], y[16:]), [x[16:], y[16:]], (x[16:], y[16:], None)):
        h = model.fit(x, y, validation_data=vd, verbose=0)
        np.testing.assert_allclose(h.history["val_loss"], [ref], rtol=1e-6)
    h = model.fit(x, y, validation_split=0.2, verbose=0)          # the last 20%, as Keras
    np.testing.assert_allclose(h.history["val_loss"], [ref], rtol=1e-6)
    h = model.fit(x, y, validation_data=(x, y), validation_freq=2, epochs=4, verbose=0)
    assert [len(h.history[k]) for k in ("loss", "val_loss")] == [4, 2]
    with pytest.raises(ValueError, match="both class_weight and sample_weight"):
        model.fit(x, y, class_weight={0: 2.0}, sample_weight=np.ones(20), verbose=0)
    for bs in (0, -1, 2.5):
        with pytest.raises(ValueError, match="batch_size"):
            model.fit(x, y, batch_size=bs, verbose=0)


def test_callbacks_see_test_and_predict_hooks():
    calls = []

    class Recorder(aslnet.callbacks.Callback):
        def __getattribute__(self, name):
            if name.startswith("on_"):
                return lambda *a, **k: calls.append(name)
            return super().__getattribute__(name)
    x, y = data(8)
    model = small_model()
    model.compile(SGD(0.0), "categorical_crossentropy")
    model.predict(x, batch_size=4, callbacks=[Recorder()], verbose=0)
    assert calls == ["on_predict_begin"] + ["on_predict_batch_begin",
                                            "on_predict_batch_end"] * 2 + ["on_predict_end"]
    calls.clear()
    model.evaluate(x, y, batch_size=8, callbacks=[Recorder()], verbose=0)
    assert calls == ["on_test_begin", "on_test_batch_begin", "on_test_batch_end",
                     "on_test_end"]
    calls.clear()
    model.fit(x, y, batch_size=8, validation_data=(x, y), callbacks=[Recorder()], verbose=0)
    assert "on_test_batch_end" in calls
    assert calls.index("on_test_end") < calls.index("on_epoch_end")


def test_calls_from_threads_queue_instead_of_failing():
    import threading
    x, y = data(16)
    model = small_model()
    model.compile(Adam(1e-3), "categorical_crossentropy")
    expected = model.predict(x, batch_size=4, verbose=0)
    out, errors = [], []

    def work():
        try:
            for _ in range(5):
                out.append(model.predict(x, batch_size=4, verbose=0))
        except Exception as e:      # pragma: no cover - the failure being tested
            errors.append(e)
    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(out) == 15
    for o in out:
        np.testing.assert_array_equal(o, expected)
    # predict while fit runs in another thread: it runs before or after the whole fit,
    # never in the middle of it (it sees the weights of before or of after the 3 epochs)
    before = model.predict(x, verbose=0)
    t = threading.Thread(target=lambda: model.fit(x, y, epochs=3, verbose=0))
    t.start()
    during = model.predict(x, verbose=0)
    t.join()
    after = model.predict(x, verbose=0)
    assert model.history is not None and len(model.history.epoch) == 3
    assert not np.array_equal(before, after)          # the fit moved the weights
    assert np.array_equal(during, before) or np.array_equal(during, after)


@pytest.mark.keras
@pytest.mark.parametrize("how", ["class_weight", "sample_weight", "train_on_batch"])
def test_weighted_losses_match_keras(how):
    """class_weight / sample_weight scale each sample's loss and gradient, averaged over the
    batch (Keras's sum_over_batch_size): the same losses and weights as Keras."""
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    keras = pytest.importorskip("tensorflow").keras
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 5)).astype(np.float32)
    labels = np.array([0, 1, 2, 2, 1, 0, 2, 2, 1, 0, 0, 2])
    y = np.eye(3, dtype=np.float32)[labels]
    w0 = [rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=3).astype(np.float32)]
    model = aslnet.models.Sequential([L.Input((5,)), L.Dense(3, activation="softmax")])
    kmodel = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, activation="softmax")])
    for m, opt in ((model, SGD(0.5)), (kmodel, keras.optimizers.SGD(0.5))):
        m.set_weights(w0)
        m.compile(opt, "categorical_crossentropy")
    kw = {"class_weight": {0: 2.0, 2: 0.25}} if how == "class_weight" else \
        {"sample_weight": rng.uniform(0, 3, 12).astype(np.float32)}
    if how == "train_on_batch":
        ours = [model.train_on_batch(x[:6], y[:6], sample_weight=kw["sample_weight"][:6])]
        theirs = [float(kmodel.train_on_batch(x[:6], y[:6],
                                              sample_weight=kw["sample_weight"][:6]))]
    else:
        ours = model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0,
                         **kw).history["loss"]
        theirs = kmodel.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0,
                            **kw).history["loss"]
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)
    for a, b in zip(model.get_weights(), kmodel.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    if how != "train_on_batch":                 # and the weights did change the result
        plain = aslnet.models.Sequential([L.Input((5,)), L.Dense(3, activation="softmax")])
        plain.set_weights(w0)
        plain.compile(SGD(0.5), "categorical_crossentropy")
        plain.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
        assert np.abs(plain.get_weights()[0] - model.get_weights()[0]).max() > 1e-3


# -- fit's state after errors, optimizer state, callback order, learning rate ----------
def test_an_interrupted_fit_leaves_no_stale_validation_cache():
    """Ctrl-C (or an exception) inside fit: the frozen trunk's cached validation features
    must not answer a later evaluate on the same array after the trunk changed."""
    x, y = data(12)
    model = small_model().freeze(upto=-1)
    model.compile(SGD(0.1), "categorical_crossentropy")

    class Interrupt(aslnet.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, validation_data=(x, y), epochs=2, verbose=0, callbacks=[Interrupt()])
    assert model._val_cache is None
    other = small_model(seed=7).get_weights()
    model.set_weights(other[:-2] + model.get_weights()[-2:])      # a new trunk
    twin = small_model(seed=3)
    twin.set_weights(model.get_weights())
    twin.compile(SGD(0.1), "categorical_crossentropy")
    assert model.evaluate(x, y, verbose=0) == twin.evaluate(x, y, verbose=0)


def test_compile_with_a_new_optimizer_starts_from_zero():
    """Keras: compiling with a new optimizer forgets the old one's moments and iteration
    count; compiling again with the same optimizer keeps them."""
    x, y = data(8)
    model = small_model()
    adam = Adam(1e-2)
    model.compile(adam, "categorical_crossentropy")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    state = model.get_optimizer_state()
    model.compile(adam, "categorical_crossentropy")
    kept = model.get_optimizer_state()
    assert kept["iterations"] == state["iterations"] == 2
    for key, value in state["slots"].items():
        np.testing.assert_array_equal(kept["slots"][key], value)
    model.compile(Adam(1e-3), "categorical_crossentropy")
    assert model.get_optimizer_state()["iterations"] == 0
    fresh = small_model(seed=4)
    fresh.set_weights(model.get_weights())
    fresh.compile(Adam(1e-3), "categorical_crossentropy")
    for m in (model, fresh):
        m.train_on_batch(x, y)
    for a, b in zip(model.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_validation_inside_fit_keeps_the_callbacks_params():
    seen = []

    class Params(aslnet.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((dict(self.params), self.model))
    x, y = data(8)
    model = small_model()
    model.compile(SGD(0.0), "categorical_crossentropy")
    model.fit(x, y, batch_size=4, epochs=2, validation_data=(x, y), verbose=0,
              callbacks=[Params()])
    assert [(p["epochs"], p["steps"], m) for p, m in seen] == [(2, 2, model)] * 2


@pytest.mark.parametrize("method", ["predict", "evaluate"])
def test_batch_begin_callbacks_run_before_the_batch_is_computed(method):
    """A callback that changes the weights in on_*_batch_begin(i) changes batch i's result
    (Keras calls the hook, then computes the batch)."""
    model = _tiny()
    model.compile(SGD(0.0), "categorical_crossentropy")
    x = np.zeros((8, 4), np.float32)
    y = np.eye(4, dtype=np.float32)[np.zeros(8, int)]

    class SetBias(aslnet.callbacks.Callback):
        def on_batch(self, i, logs=None):
            kernel, _ = self.model.get_weights()
            self.model.set_weights([kernel, np.array([i + 1.0, 0, 0, 0], np.float32)])
        on_predict_batch_begin = on_test_batch_begin = on_batch
    p = 1 / (1 + 3 * np.exp(-np.array([1.0, 2.0])))    # softmax([i + 1, 0, 0, 0])[0]
    if method == "predict":
        out = model.predict(x, batch_size=4, verbose=0, callbacks=[SetBias()])
        np.testing.assert_allclose(out[::4, 0], p, rtol=1e-6)
    else:
        loss = model.evaluate(x, y, batch_size=4, verbose=0, callbacks=[SetBias()])
        np.testing.assert_allclose(loss, -np.log(p).mean(), rtol=1e-6)


def test_learning_rate_assign_as_keras_users_write_it():
    x, y = data(8)
    model = small_model().freeze(upto=-1)       # the Dense alone: no moving statistics
    model.compile(Adam(1e-2), "categorical_crossentropy")
    model.optimizer.learning_rate.assign(0.0)
    assert model.optimizer.learning_rate == 0.0 and model.optimizer.lr == 0.0
    assert model.optimizer.learning_rate.numpy().dtype == np.float32
    before = model.get_weights()
    model.train_on_batch(x, y)                 # Adam with rate 0 moves nothing
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    model.optimizer.lr = 1e-2
    model.train_on_batch(x, y)
    assert np.abs(model.get_weights()[-2] - before[-2]).max() > 1e-4
    for bad in (-1.0, float("nan"), "fast"):
        with pytest.raises(ValueError):
            model.optimizer.learning_rate = bad
    scheduled = Adam(learning_rate=aslnet.optimizers.schedules.ExponentialDecay(1e-3, 10, 0.5))
    with pytest.raises(TypeError, match="LearningRateSchedule"):   # as Keras 3
        scheduled.learning_rate = 1e-4
    import copy
    twin = copy.deepcopy(model.optimizer)
    twin.learning_rate.assign(0.5)
    assert (twin.learning_rate, model.optimizer.learning_rate) == (0.5, 1e-2)


def test_learning_rate_scheduler_reaches_the_core():
    """LearningRateScheduler sets each epoch's rate before its batches: rate 0 in epoch 1
    leaves the weights of epoch 0 untouched."""
    x, y = data(8)
    model = small_model().freeze(upto=-1)       # the Dense alone: no moving statistics
    model.compile(SGD(0.1), "categorical_crossentropy")
    after = []

    class Weights(aslnet.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            after.append(self.model.get_weights())
    h = model.fit(x, y, epochs=3, verbose=0, callbacks=[
        aslnet.callbacks.LearningRateScheduler(lambda e, lr: [0.1, 0.0, 0.05][e]), Weights()])
    assert h.history["learning_rate"] == [0.1, 0.0, 0.05]
    for a, b in zip(after[0], after[1]):
        np.testing.assert_array_equal(a, b)
    assert any(np.abs(a - b).max() > 0 for a, b in zip(after[1], after[2]))


def test_training_needs_a_softmax_output_said_before_the_core():
    m = aslnet.models.Sequential([L.Input((4,)), L.Dense(3, name="logits")])
    m.compile(SGD(0.1), "categorical_crossentropy")
    x, y = np.ones((2, 4), np.float32), np.eye(3, dtype=np.float32)[:2]
    m.evaluate(x, y, verbose=0)                            # Keras's CCE on the outputs
    for train in (lambda: m.fit(x, y, verbose=0), lambda: m.train_on_batch(x, y)):
        with pytest.raises(ValueError, match="'logits'.*softmax"):
            train()
    # a dropout after the softmax: the C core cannot fuse the cross-entropy there, and
    # says so before training (it was a CoreError from inside train_step)
    d = aslnet.models.Sequential([L.Input((4,)), L.Dense(3, activation="softmax"),
                                  L.Dropout(0.5, name="drop")])
    d.compile(SGD(0.1), "categorical_crossentropy")
    with pytest.raises(ValueError, match="'drop'.*softmax"):
        d.fit(x, y, verbose=0)


def test_metric_names_and_verbose_2(capsys):
    keras = pytest.importorskip("keras")
    x, y = data(8)
    model = small_model()
    model.compile("adam", "categorical_crossentropy", metrics="accuracy")
    assert model.metrics_names == ["loss", "accuracy"]
    values = model.evaluate(x, y, batch_size=4, verbose=2)
    out = capsys.readouterr().out
    assert out.startswith("2/2 - ") and "accuracy:" in out and out.count("\n") == 1
    assert dict(zip(model.metrics_names, values))["accuracy"] == values[1]
    model.predict(x, batch_size=4, verbose=2)
    assert capsys.readouterr().out.startswith("2/2 - ")
    model.compile("adam", "sparse_categorical_crossentropy",
                  metrics=[keras.metrics.SparseCategoricalAccuracy()])
    h = model.fit(x, y.argmax(1), verbose=0)
    assert list(h.history) == ["loss", "sparse_categorical_accuracy"]
    with pytest.raises(ValueError, match="keras optimizer"):
        model.compile(keras.optimizers.Adam(1e-4), "categorical_crossentropy")
    with pytest.raises(TypeError, match="from keras"):
        aslnet.models.Sequential([L.Input((4,)), keras.layers.Dense(3)])
    with pytest.raises(TypeError, match="from keras"):
        L.Dense(3)(keras.Input((4,)))


def test_optimizers_take_keras_spellings():
    assert Adam(lr=0.01).learning_rate == 0.01
    adam = Adam(1e-3, name="opt", amsgrad=False, clipnorm=None, weight_decay=None)
    assert adam.name == "opt" and SGD().name == "sgd"
    assert Adam(amsgrad=True).amsgrad and SGD(clipnorm=1.0).clipnorm == 1.0
    with pytest.raises(NotImplementedError, match="use_ema"):
        Adam(use_ema=True)
    with pytest.raises(TypeError, match="unexpected"):
        Adam(beta1=0.5)


def test_generator_methods_of_old_tutorials_and_to_categorical():
    from aslnet.utils import to_categorical
    keras = pytest.importorskip("keras")
    labels = np.array([[2], [0], [1], [2]])
    np.testing.assert_array_equal(to_categorical(labels), keras.utils.to_categorical(labels))
    np.testing.assert_array_equal(to_categorical([1, 0], num_classes=4),
                                  keras.utils.to_categorical([1, 0], num_classes=4))
    with pytest.raises(ValueError, match="labels must be in"):
        to_categorical([3], num_classes=3)
    x, y = data(8)
    model = small_model()
    model.compile(SGD(0.0), "categorical_crossentropy")

    def gen():
        while True:
            yield x, y
    with pytest.warns(DeprecationWarning, match="fit_generator"):
        h = model.fit_generator(gen(), steps_per_epoch=2, epochs=2, verbose=0, workers=1)
    assert len(h.history["loss"]) == 2
    with pytest.warns(DeprecationWarning, match="evaluate_generator"):
        loss = model.evaluate_generator(gen(), steps=1)
    assert loss == pytest.approx(model.evaluate(x, y, verbose=0))
    with pytest.warns(DeprecationWarning, match="predict_generator"):
        assert model.predict_generator(gen(), steps=2).shape == (16, 3)


def test_clear_messages_for_common_target_and_input_mistakes():
    x, y = data(6)
    model = small_model()
    model.compile(SGD(0.0), "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="look one-hot: use loss='categorical_crossentropy'"):
        model.fit(x, y, verbose=0)
    with pytest.raises(ValueError, match="integer labels"):
        model.fit(x, np.full(6, 0.5), verbose=0)
    model.compile(SGD(0.0), "categorical_crossentropy")
    with pytest.raises(ValueError, match="look like integer labels"):
        model.fit(x, y.argmax(1), verbose=0)
    name = model.input.name if hasattr(model.input, "name") else model.layers[0].name
    h = model.fit({name: x}, y, verbose=0)                      # Keras's dict of inputs
    assert len(h.history["loss"]) == 1
    np.testing.assert_array_equal(model.predict({name: x}, verbose=0),
                                  model.predict(x, verbose=0))
    with pytest.raises(ValueError, match="has one input"):
        model.predict({"other": x}, verbose=0)


def test_training_needs_a_classifier_output_and_sane_learning_rates():
    model = aslnet.models.Sequential([L.Input((4, 4, 2)),
                                      L.Dense(3, activation="softmax")])   # (None, 4, 4, 3)
    model.compile(SGD(0.1), "categorical_crossentropy")
    with pytest.raises(ValueError, match="output must be \\(None, classes\\)"):
        model.fit(np.ones((2, 4, 4, 2), np.float32), np.eye(3, dtype=np.float32)[:2],
                  verbose=0)
    for bad in (1e300, "1e-3", b"0.1", np.complex64(1), True):
        with pytest.raises(ValueError):
            Adam(learning_rate=bad)


@pytest.mark.keras
def test_evaluate_and_validation_with_sample_weights_match_keras():
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    keras = pytest.importorskip("tensorflow").keras
    rng = np.random.default_rng(2)
    x = rng.normal(size=(10, 5)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 10)]
    w = rng.uniform(0, 3, 10).astype(np.float32)
    w0 = [rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=3).astype(np.float32)]
    model = aslnet.models.Sequential([L.Input((5,)), L.Dense(3, activation="softmax")])
    kmodel = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, activation="softmax")])
    for m, opt in ((model, SGD(0.1)), (kmodel, keras.optimizers.SGD(0.1))):
        m.set_weights(w0)
        m.compile(opt, "categorical_crossentropy", metrics=["accuracy"])
    ours = model.evaluate(x, y, batch_size=4, sample_weight=w, verbose=0)
    theirs = kmodel.evaluate(x, y, batch_size=4, sample_weight=w, verbose=0)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)
    assert ours[0] != pytest.approx(model.evaluate(x, y, verbose=0)[0], rel=1e-3)
    np.testing.assert_allclose(model.test_on_batch(x, y, sample_weight=w),
                               kmodel.test_on_batch(x, y, sample_weight=w), rtol=1e-5)
    for kw in ({"validation_data": (x[6:], y[6:], w[6:])}, {"validation_split": 0.4}):
        h = model.fit(x, y, sample_weight=w, batch_size=4, epochs=1, shuffle=False,
                      verbose=0, **kw)
        kh = kmodel.fit(x, y, sample_weight=w, batch_size=4, epochs=1, shuffle=False,
                        verbose=0, **kw)
        np.testing.assert_allclose(h.history["val_loss"], kh.history["val_loss"], rtol=1e-5)
