"""The functional Model: structure, summary, weights, freezing, copies, configs, Keras semantics."""
import numpy as np
import pytest

import aslnet
from aslnet import layers as L
from aslnet.models import Model
from aslnet.optimizers import SGD, Adam

from tests.model_fixtures import data, small_model


def test_structure_and_summary(capsys):
    model = small_model()
    assert model.layers[0].name.startswith("input")
    assert model.output_shape == (None, 3)
    model.summary()
    out = capsys.readouterr().out
    total = model.count_params()
    assert f"Total params: {total:,}" in out
    # BN moving statistics are never trainable (2 per channel: 8 + 8 + 16 channels)
    assert f"Non-trainable params: {2 * (8 + 8 + 16):,}" in out
    model.freeze(upto=-2)        # only GAP and Dense trainable
    model.summary()
    out = capsys.readouterr().out
    dense = model.layers[-1].count_params()
    assert f"Trainable params: {dense:,}" in out
    assert [l.trainable for l in model.layers[-2:]] == [True, True]
    assert not any(l.trainable for l in model.layers[:-2])


def test_get_set_weights_keras_order():
    model = small_model()
    weights = model.get_weights()
    assert [w.shape for w in weights[:5]] == [(3, 3, 3, 8), (8,), (8,), (8,), (8,)]
    twin = small_model(seed=5)
    twin.set_weights(weights)
    x, _ = data()
    np.testing.assert_array_equal(twin.predict(x, verbose=0), model.predict(x, verbose=0))
    with pytest.raises(ValueError, match="expects"):
        twin.set_weights(weights[:-1])


def test_load_pretrained_is_the_tutorial_model(shared_weights_dir):
    aslnet.clear_session()          # fresh auto-names, as in a new Keras session
    model = aslnet.load_pretrained("mobilenet", num_classes=10, weights_dir=shared_weights_dir)
    assert len(model.layers) == 89
    assert model.layers[-2].name == "global_average_pooling2d"
    assert sum(l.trainable for l in model.layers) == 23
    assert model.count_params() == 3_239_114
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    assert trainable == 1_873_930


def test_duplicate_layer_names_are_refused():
    inp = L.Input((4,))
    with pytest.raises(ValueError, match="unique.*'d'"):
        Model(inp, L.Dense(2, name="d")(L.Dense(5, name="d")(inp)))


def test_model_trainable_false_freezes_every_layer():
    x, y = data(8)
    model = small_model()
    model.compile(Adam(1e-2), "categorical_crossentropy")
    n_weights = len(model.weights)
    assert model.trainable_variables == model.trainable_weights != []     # Keras's names
    model.trainable = False
    assert not model.trainable and model.trainable_weights == []
    assert model.trainable_variables == [] and len(model.non_trainable_variables) == n_weights
    assert model.layers[-1].variables == model.layers[-1].weights
    w0 = model.get_weights()
    model.train_on_batch(x, y)
    for a, b in zip(w0, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    model.trainable = True
    assert all(layer.trainable for layer in model.layers)


def test_get_layer_out_of_range_says_so():
    model = small_model()
    with pytest.raises(ValueError, match="index 100 but model only has 13 layers"):
        model.get_layer(index=100)
    assert model.get_layer(index=-1) is model.layers[-1]


def test_nesting_a_model_checks_the_input_shape():
    base = small_model()          # (the rest of nesting: tests/models/test_nested.py)
    with pytest.raises(ValueError, match="expects input shape"):
        base(L.Input((17, 16, 3)))
    out = base(L.Input(base.input_shape[1:]))
    assert out.shape == base.output_shape and out._layer is base


def test_load_pretrained_and_freeze_check_their_arguments(shared_weights_dir):
    for kw in ({"num_classes": 2.5}, {"num_classes": 0}, {"num_classes": True},
               {"trainable_layers": -3}, {"trainable_layers": 2.5},
               {"trainable_layers": 1000}, {"name": "resnet"}):
        with pytest.raises(ValueError, match=next(iter(kw)).replace("name", "model")):
            aslnet.load_pretrained(weights_dir=shared_weights_dir, **kw)
    model = aslnet.load_pretrained(num_classes=3, trainable_layers=0,
                                   weights_dir=shared_weights_dir, input_shape=None)
    assert model.input_shape == (None, 224, 224, 3) and model.trainable_weights == []
    with pytest.raises(ValueError, match="89 layers"):
        model.freeze(upto=-90)
    with pytest.raises(TypeError, match="upto"):
        model.freeze(upto=2.0)
    assert sum(l.trainable for l in model.freeze(upto=89).layers) == 0


def test_calls_with_training_and_sub_models():
    model = small_model()
    x, _ = data(4)
    np.testing.assert_array_equal(model(x, training=False), model.predict(x, verbose=0))
    with pytest.raises(NotImplementedError, match="training=True"):
        model(x, training=True)
    with pytest.raises(NotImplementedError, match="training=True"):
        model(L.Input((16, 16, 3)), training=True)          # nested: training=False only
    t = L.Input((4,))
    L.Dense(3)(t, training=False)                          # no training mode: harmless
    with pytest.raises(NotImplementedError, match="training"):
        L.Dropout(0.5)(t, training=True)
    with pytest.raises(ValueError, match="must be an Input"):
        Model(model.layers[5].output, model.layers[-1].output)


def test_load_weights_by_name_into_another_head(tmp_path):
    aslnet.clear_session()                      # the same auto-names in both
    model = small_model()
    model.save_weights(tmp_path / "w.h5")
    aslnet.clear_session()
    other = small_model(seed=3, classes=5)
    with pytest.raises(ValueError):
        other.load_weights(tmp_path / "w.h5")
    other.load_weights(tmp_path / "w.h5", by_name=True, skip_mismatch=True)
    for a, b in zip(other.get_weights()[:-2], model.get_weights()[:-2]):
        np.testing.assert_array_equal(a, b)


def test_copies_and_pickles_of_a_trained_model_train_on_identically():
    import copy
    import pickle
    x, y = data(8)
    model = small_model()
    model.compile(Adam(1e-2), "categorical_crossentropy")
    model.fit(x, y, batch_size=4, verbose=0)
    twins = [copy.deepcopy(model), pickle.loads(pickle.dumps(model))]
    for m in [model] + twins:
        m.train_on_batch(x, y)                  # the Adam moments came along
    for twin in twins:
        assert twin.layers[1] is not model.layers[1]
        assert twin.get_optimizer_state()["iterations"] == 3
        for a, b in zip(twin.get_weights(), model.get_weights()):
            np.testing.assert_array_equal(a, b)


def test_mobilenet_at_another_size_says_which_weights(shared_weights_dir):
    """Keras's warning, exactly where Keras gives it (tests/test_applications_v2.py)."""
    from aslnet.applications.mobilenet import MobileNet
    with pytest.warns(UserWarning, match=r"Weights for input shape \(224, 224\)"):
        MobileNet(input_shape=(200, 200, 3), include_top=False, weights_dir=shared_weights_dir)


def test_layer_shapes_as_tf_keras_gives_them():
    model = small_model()
    conv = model.layers[2]
    assert conv.input_shape == (None, 17, 17, 3) and conv.output_shape == (None, 8, 8, 8)
    assert model.layers[-1].output_shape == (None, 3)
    with pytest.raises(AttributeError, match="never been called"):
        L.Dense(2).output_shape


def test_config_json_and_clone_rebuild_the_architecture():
    x, _ = data(4)
    model = small_model()
    for clone in (Model.from_config(model.get_config()),
                  aslnet.models.model_from_json(model.to_json()),
                  aslnet.models.clone_model(model)):
        assert [type(l) for l in clone.layers] == [type(l) for l in model.layers]
        assert [l.name for l in clone.layers] == [l.name for l in model.layers]
        assert clone.layers[2] is not model.layers[2]
        clone.set_weights(model.get_weights())
        np.testing.assert_array_equal(clone.predict(x, verbose=0), model.predict(x, verbose=0))
    seq = aslnet.models.Sequential([L.Dense(3, activation="softmax", input_shape=(4,))])
    back = aslnet.models.Sequential.from_config(seq.get_config())
    assert isinstance(back, aslnet.models.Sequential) and back.output_shape == (None, 3)


def test_optimizer_iterations_counts_the_models_steps():
    x, y = data(8)
    model = small_model()
    opt = Adam(1e-3)
    assert opt.iterations == 0
    model.compile(opt, "categorical_crossentropy")
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert model.optimizer.iterations == 4
    import copy
    assert copy.deepcopy(model).optimizer.iterations == 4


def test_summary_show_trainable():
    model = small_model().freeze(upto=-2)
    lines = []
    model.summary(show_trainable=True, print_fn=lines.append)
    assert lines[2].split()[-1] == "Trainable"
    flags = [line.split()[-1] for line in lines if "(" in line and ")" in line][1:]
    assert flags == ["Y" if l.trainable else "N" for l in model.layers]
    assert len(lines[1]) == 65 + 11


def test_optimizer_state_across_copies_recompiles_and_graph_edits():
    """A copy recompiled with a new optimizer starts from zero (it used to take the old
    one's state along); Sequential.add/pop keep the state of the layers that stay; a
    shallow copy does not take the original's optimizer link."""
    import copy
    x, y = data(8)
    model = small_model()
    model.compile(Adam(1e-2), "categorical_crossentropy")
    model.fit(x, y, batch_size=4, verbose=0)
    twin = copy.deepcopy(model)
    twin.compile(SGD(0.1, momentum=0.9), "categorical_crossentropy")
    twin.fit(x, y, batch_size=4, verbose=0)
    assert twin.optimizer.iterations == 2
    shallow = copy.copy(model)
    assert model.optimizer.iterations == 2 and shallow.optimizer is model.optimizer
    model.train_on_batch(x, y)
    assert model.optimizer.iterations == 3

    aslnet.set_random_seed(1)
    seq = aslnet.models.Sequential([L.Dense(6, activation="relu", input_shape=(4,)),
                                    L.Dense(3, activation="softmax", name="head")])
    seq.compile(Adam(1e-2), "categorical_crossentropy")
    xs = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    seq.fit(xs, y, batch_size=4, verbose=0)
    kept = seq.get_optimizer_state()
    head = seq.pop()
    seq.add(L.Dense(5, activation="softmax", name="head2"))      # another head
    state = seq.get_optimizer_state()
    assert state["iterations"] == kept["iterations"] == 2
    first = seq.layers[0].name
    for key in [k for k in kept["slots"] if k[0] == first]:
        np.testing.assert_array_equal(state["slots"][key], kept["slots"][key])
    assert not any(k[0] == head.name for k in state["slots"])
    seq.fit(xs, np.eye(5, dtype=np.float32)[np.arange(8) % 5], batch_size=4, verbose=0)
