"""aslnet.callbacks with a fake model: Keras's EarlyStopping, ModelCheckpoint, History, logging."""
import re
import time

import numpy as np
import pytest

from aslnet.callbacks import (
    Callback, CallbackList, EarlyStopping, History, LearningRateScheduler, ModelCheckpoint,
    ProgbarLogger, ReduceLROnPlateau)


class FakeModel:
    """The model interface callbacks may use; its weights are [epoch number]."""

    def __init__(self):
        self.stop_training = False
        self.weights = [np.zeros(2)]
        self.saved = []

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.weights = [np.array(w) for w in weights]

    def save(self, path):
        self.saved.append(("model", str(path)))
        with open(path, "w") as f:
            f.write("model")

    def save_weights(self, path):
        self.saved.append(("weights", str(path)))


def fit(callbacks, epoch_logs, steps=2, verbose=0, model=None, step_time=0.0):
    """A minimal Keras fit loop: epoch e sets the weights to [e, e] and logs epoch_logs[e]."""
    model = model or FakeModel()
    history = History()
    cbs = CallbackList(list(callbacks) + [history], add_progbar=verbose != 0, model=model,
                       verbose=verbose, epochs=len(epoch_logs), steps=steps)
    model.stop_training = False
    cbs.on_train_begin()
    for epoch, logs in enumerate(epoch_logs):
        cbs.on_epoch_begin(epoch)
        for step in range(steps):
            cbs.on_train_batch_begin(step)
            time.sleep(step_time)
            model.weights = [np.full(2, float(epoch))]
            cbs.on_train_batch_end(step, {"loss": logs.get("loss", 1.0)})
        cbs.on_epoch_end(epoch, dict(logs))
        if model.stop_training:
            break
    cbs.on_train_end()
    return model, history


def losses(*values):
    return [{"loss": 1.0, "val_loss": v} for v in values]


def test_history_is_plain_data():
    _, history = fit([], [{"loss": np.float32(0.5), "accuracy": 1}, {"loss": 0.25,
                                                                     "accuracy": 0.5}])
    assert history.epoch == [0, 1]
    assert history.history == {"loss": [0.5, 0.25], "accuracy": [1.0, 0.5]}
    assert all(type(v) is float for vs in history.history.values() for v in vs)
    assert history.params == {"verbose": 0, "epochs": 2, "steps": 2}


def test_callback_list_calls_every_hook_in_order():
    calls = []

    class Recorder(Callback):
        def __getattribute__(self, name):
            if name.startswith("on_"):
                return lambda *args, **kwargs: calls.append((name, args))
            return super().__getattribute__(name)

    model = FakeModel()
    cbs = CallbackList([Recorder()], model=model, epochs=1)
    assert cbs.callbacks[0].model is model and cbs.callbacks[0].params == {"epochs": 1}
    hooks = [h for h in dir(Callback) if h.startswith("on_")]
    for hook in hooks:
        getattr(cbs, hook)(*([3] if "batch" in hook or "epoch" in hook else []))
    assert [c[0] for c in calls] == hooks
    batch_calls = []

    class Old(Callback):
        def on_batch_end(self, batch, logs=None):
            batch_calls.append(batch)
    CallbackList([Old()]).on_train_batch_end(4)  # Keras's alias
    assert batch_calls == [4]


def test_early_stopping_patience():
    stopper = EarlyStopping(patience=2)
    model, history = fit([stopper], losses(1.0, 0.9, 0.95, 0.96, 0.97, 0.5))
    assert history.epoch == [0, 1, 2, 3]
    assert stopper.stopped_epoch == 3 and model.stop_training
    assert stopper.best == 0.9 and stopper.best_epoch == 1
    np.testing.assert_array_equal(model.weights[0], [3, 3])  # not restored


def test_early_stopping_patience_zero_stops_at_first_non_improvement():
    _, history = fit([EarlyStopping()], losses(1.0, 0.9, 0.9, 0.1))
    assert history.epoch == [0, 1, 2]


@pytest.mark.parametrize("logs", [losses(1.0, 0.5, 0.7, 0.8, 0.9), losses(1.0, 0.5, 0.7)])
def test_restore_best_weights_stopped_or_not(logs):
    model, _ = fit([EarlyStopping(patience=2, restore_best_weights=True)], logs)
    np.testing.assert_array_equal(model.weights[0], [1, 1])


def test_mode_auto_maximises_accuracy_and_min_delta():
    accuracies = [{"val_accuracy": a} for a in (0.5, 0.6, 0.55, 0.65, 0.6)]
    _, history = fit([EarlyStopping("val_accuracy", patience=1)], accuracies)
    assert history.epoch == [0, 1, 2]
    _, history = fit([EarlyStopping("val_accuracy", patience=1, min_delta=0.2)], accuracies)
    assert history.epoch == [0, 1]
    _, history = fit([EarlyStopping("val_acc", mode="min", patience=1)],
                     [{"val_acc": a} for a in (0.5, 0.6)])
    assert history.epoch == [0, 1]


def test_baseline_and_start_from_epoch():
    _, history = fit([EarlyStopping(patience=2)], losses(1.0, 1.1, 1.2, 1.3))
    assert history.epoch == [0, 1, 2]
    _, history = fit([EarlyStopping(patience=2, baseline=0.3)], losses(1.0, 1.1, 1.2, 1.3))
    assert history.epoch == [0, 1]  # the first epoch did not beat the baseline: no reset
    stopper = EarlyStopping(patience=1, start_from_epoch=2)
    _, history = fit([stopper], losses(1.0, 2.0, 3.0, 4.0, 5.0))
    assert history.epoch == [0, 1, 2, 3]


def test_early_stopping_without_the_metric_warns_and_continues():
    with pytest.warns(UserWarning, match="val_loss"):
        _, history = fit([EarlyStopping()], [{"loss": 1.0}] * 3)
    assert history.epoch == [0, 1, 2]


def test_early_stopping_reports(capsys):
    fit([EarlyStopping(patience=1, verbose=1, restore_best_weights=True)], losses(1, 2, 3))
    out = capsys.readouterr().out
    assert "Epoch 2: early stopping\n" in out
    assert "Restoring model weights from the end of the best epoch: 1.\n" in out


def test_checkpoint_save_best_only_with_formatted_names(tmp_path):
    path = str(tmp_path / "ckpt" / "model-{epoch:02d}-{val_loss:.2f}.h5")
    model, _ = fit([ModelCheckpoint(path, save_best_only=True)], losses(1.0, 0.8, 0.9, 0.5))
    names = [p.rsplit("/", 1)[1] for _, p in model.saved]
    assert names == ["model-01-1.00.h5", "model-02-0.80.h5", "model-04-0.50.h5"]
    assert {kind for kind, _ in model.saved} == {"model"}
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == names


def test_checkpoint_every_epoch_weights_and_max_mode(tmp_path):
    path = str(tmp_path / "w-{epoch}.weights.h5")
    model, _ = fit([ModelCheckpoint(path, save_weights_only=True)], losses(1.0, 2.0))
    assert model.saved == [("weights", str(tmp_path / f"w-{e}.weights.h5")) for e in (1, 2)]
    model, _ = fit([ModelCheckpoint(path, monitor="val_accuracy", save_best_only=True)],
                   [{"val_accuracy": a} for a in (0.5, 0.4, 0.7)])
    assert [p for _, p in model.saved] == [str(tmp_path / f"w-{e}.weights.h5") for e in (1, 3)]


def test_checkpoint_by_batches(tmp_path):
    path = str(tmp_path / "m-{epoch}-{batch}.h5")
    model, _ = fit([ModelCheckpoint(path, save_freq=3)], losses(1, 1), steps=4)
    assert [p.rsplit("/", 1)[1] for _, p in model.saved] == ["m-1-3.h5", "m-2-2.h5"]
    with pytest.raises(ValueError):
        ModelCheckpoint(path, save_freq="batch")


def test_checkpoint_errors(tmp_path):
    with pytest.warns(UserWarning, match="val_loss"):
        model, _ = fit([ModelCheckpoint(str(tmp_path / "m.h5"), save_best_only=True)],
                       [{"loss": 1.0}])
    assert model.saved == []
    with pytest.raises(KeyError, match="val_acc"):
        fit([ModelCheckpoint(str(tmp_path / "m-{val_acc}.h5"))], losses(1.0))
    (tmp_path / "dir").mkdir()
    with pytest.raises(IOError, match="directory"):
        fit([ModelCheckpoint(str(tmp_path / "dir"))], losses(1.0))


def test_checkpoint_verbose(tmp_path, capsys):
    fit([ModelCheckpoint(str(tmp_path / "m.h5"), save_best_only=True, verbose=1)],
        losses(1.0, 2.0))
    out = capsys.readouterr().out
    assert "Epoch 1: val_loss improved from inf to 1.00000, saving model to" in out
    assert "Epoch 2: val_loss did not improve from 1.00000" in out


def test_progbar_logger_lines(capsys):
    fit([], losses(0.5, 0.25), steps=3, verbose=2, step_time=0.02)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Epoch 1/2" and out[2] == "Epoch 2/2"
    line = re.fullmatch(r"3/3 - \d+s - loss: 1\.0000 - val_loss: 0\.2500 - (\d+)ms/epoch - "
                        r"(\d+)ms/step", out[3])
    assert line and int(line[1]) >= 60 and int(line[2]) >= 20, out[3]  # timed from epoch start
    fit([ProgbarLogger()], losses(0.5), steps=3, verbose=1)
    out = capsys.readouterr().out
    assert "Epoch 1/1" not in out
    assert re.search(r"3/3 \[={30}\] - \d+s .*/step - loss: 1\.0000 - val_loss: 0\.5000\n$", out)


# -- learning-rate callbacks: the rates Keras's own callbacks set, epoch by epoch ---------
class _Optimizer:
    def __init__(self, lr):
        self.learning_rate = lr


def _lr_run(callback, epoch_logs, lr=1.0):
    """Drive ``callback`` through a fit on a fake model; the rate after each epoch."""
    model = FakeModel()
    model.optimizer = _Optimizer(lr)
    callback.set_model(model)
    callback.set_params({"epochs": len(epoch_logs), "steps": 1, "verbose": 0})
    callback.on_train_begin()
    rates = []
    for epoch, logs in enumerate(epoch_logs):
        callback.on_epoch_begin(epoch)
        callback.on_epoch_end(epoch, dict(logs))
        rates.append(float(model.optimizer.learning_rate))
    return rates


PLATEAU_CASES = [
    (dict(patience=2, factor=0.5), losses(1.0, 0.9, 0.95, 0.97, 0.99, 0.5, 0.6, 0.7, 0.8)),
    (dict(patience=1, factor=0.1, cooldown=2, min_lr=0.005),
     losses(1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7)),
    (dict(patience=1, min_delta=0.1), losses(1.0, 0.95, 0.8, 0.75, 0.74)),
    (dict(monitor="val_accuracy", patience=1, factor=0.5),
     [{"loss": 1.0, "val_accuracy": a} for a in (0.5, 0.6, 0.55, 0.7, 0.7, 0.7)]),
    (dict(monitor="val_loss", mode="max", patience=1, factor=0.5), losses(1.0, 0.9, 0.8)),
]


@pytest.mark.keras
@pytest.mark.parametrize("kwargs,logs", PLATEAU_CASES)
def test_reduce_lr_on_plateau_sets_the_rates_keras_sets(kwargs, logs):
    keras = pytest.importorskip("keras")
    ours = _lr_run(ReduceLROnPlateau(**kwargs), logs)
    # Keras 3 finds an accuracy's direction in its compiled metric objects (our model has
    # none: its own callbacks need mode='max' there); ours maximises accuracies in 'auto'.
    mode = "max" if "accuracy" in kwargs.get("monitor", "") else kwargs.get("mode", "auto")
    theirs = _lr_run(keras.callbacks.ReduceLROnPlateau(**{**kwargs, "mode": mode}), logs)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    assert len(set(ours)) > 1          # each case does reduce


@pytest.mark.keras
@pytest.mark.parametrize("schedule", [lambda epoch, lr: lr * 0.5 if epoch else lr,
                                      lambda epoch: 0.1 / (epoch + 1)])
def test_learning_rate_scheduler_sets_the_rates_keras_sets(schedule):
    keras = pytest.importorskip("keras")
    logs = losses(1, 1, 1, 1)
    assert _lr_run(LearningRateScheduler(schedule), logs) == \
        _lr_run(keras.callbacks.LearningRateScheduler(schedule), logs)


def test_lr_callbacks_log_the_rate_and_check_their_arguments(capsys):
    model = FakeModel()
    model.optimizer = _Optimizer(0.1)
    fit([LearningRateScheduler(lambda e: 0.1 * 2 ** -e, verbose=1)], losses(1, 1, 1),
        model=model)
    assert "Epoch 3: LearningRateScheduler setting learning rate to 0.025." in \
        capsys.readouterr().out
    model, h = fit([ReduceLROnPlateau(patience=1)], losses(1, 2, 3), model=model)
    assert h.history["learning_rate"] == pytest.approx([0.025, 0.025, 0.0025], rel=1e-12)
    with pytest.raises(ValueError, match="float"):
        _lr_run(LearningRateScheduler(lambda e: "fast"), losses(1))
    with pytest.raises(ValueError, match="factor"):
        ReduceLROnPlateau(factor=1.0)
    with pytest.warns(UserWarning, match="val_acc.*not available"):
        _lr_run(ReduceLROnPlateau(monitor="val_acc"), losses(1))
