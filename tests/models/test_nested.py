"""A model used as a layer (Keras's nested models): structure, shared weights,
training=False, the fused / cached paths on the flattened graph, refusals."""
import numpy as np
import pytest

import aslnet
from aslnet import layers as L
from aslnet.models import Model, Sequential
from aslnet.optimizers import Adam


def _base(seed=0, name="base"):
    """A small conv / batch norm / residual trunk (a MobileNetV2-like block)."""
    aslnet.utils.set_random_seed(seed)
    inp = aslnet.Input((8, 8, 3), name=f"{name}_in")
    x = L.Conv2D(8, 3, padding="same", use_bias=False, name=f"{name}_c1")(inp)
    x = L.BatchNormalization(name=f"{name}_bn1")(x)
    h = L.ReLU(6.0, name=f"{name}_r1")(x)
    x = L.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"{name}_dw")(h)
    x = L.BatchNormalization(name=f"{name}_bn2")(x)
    x = L.ReLU(6.0, name=f"{name}_r2")(x)
    x = L.Add(name=f"{name}_add")([h, x])
    base = Model(inp, x, name=name)
    rng = np.random.default_rng(seed)
    for layer in base.layers:          # non-trivial moving statistics
        if isinstance(layer, L.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, 8), rng.normal(0, 0.1, 8),
                               rng.normal(0, 0.1, 8), rng.uniform(0.5, 1.5, 8)])
    return base


def _nested(base, training=None, pre=True):
    inp = aslnet.Input((8, 8, 3), name="outer_in")
    x = L.Rescaling(1 / 127.5, offset=-1, name="pre")(inp) if pre else inp
    x = base(x, training=training) if training is not None else base(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return Model(inp, L.Dense(3, activation="softmax", name="head")(x), name="outer")


def _flat_twin(nested, seed=0):
    """The same computation as one flat model, with ``nested``'s weights."""
    base = _base(seed, name="twin")
    inp = aslnet.Input((8, 8, 3))
    x = L.Rescaling(1 / 127.5, offset=-1)(inp)
    # call the twin base's layers on x: rebuild the same graph
    c1, bn1, r1, dw, bn2, r2 = [base.get_layer(f"twin_{n}") for n in
                                ("c1", "bn1", "r1", "dw", "bn2", "r2")]
    base2 = [L.Conv2D(8, 3, padding="same", use_bias=False), L.BatchNormalization(),
             L.ReLU(6.0), L.DepthwiseConv2D(3, padding="same", use_bias=False),
             L.BatchNormalization(), L.ReLU(6.0)]
    h = base2[2](base2[1](base2[0](x)))
    y = base2[5](base2[4](base2[3](h)))
    y = L.Add()([h, y])
    y = L.GlobalAveragePooling2D()(y)
    flat = Model(inp, L.Dense(3, activation="softmax")(y))
    del c1, bn1, r1, dw, bn2, r2
    flat.set_weights(nested.get_weights())
    return flat


def _data(n=16, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (n, 8, 8, 3)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)]
    return x, y


def test_nested_layers_are_one_entry_and_the_same_objects():
    base = _base()
    model = _nested(base)
    assert [l.name for l in model.layers] == ["outer_in", "pre", "base", "gap", "head"]
    assert model.get_layer("base") is base
    assert model.get_layer("base_c1") is base.get_layer("base_c1")   # (aslnet: also nested)
    assert model.count_params() == base.count_params() + 8 * 3 + 3
    names = [v.name for v in model.trainable_variables]
    assert names[:len(base.trainable_variables)] == [v.name for v in base.trainable_variables]
    assert model.output_shape == (None, 3)
    base.trainable = False
    assert [v.name for v in model.trainable_weights] == ["head/kernel:0", "head/bias:0"]


def test_nested_outputs_equal_the_flat_model_bit_for_bit():
    model = _nested(_base())
    flat = _flat_twin(model)
    x, _ = _data()
    np.testing.assert_array_equal(model.predict(x, verbose=0), flat.predict(x, verbose=0))
    np.testing.assert_array_equal(model.predict(x[:1], verbose=0),
                                  flat.predict(x[:1], verbose=0))
    # the base alone still runs on arrays, with the same weights
    np.testing.assert_array_equal(
        model.get_layer("base").predict(x / 127.5 - 1, verbose=0).shape, (16, 8, 8, 8))


def test_fit_of_outer_model_trains_the_shared_base_weights():
    base = _base()
    model = _nested(base)
    flat = _flat_twin(model)
    before = [w.copy() for w in base.get_weights()]
    x, y = _data()
    xb = x[:2] / 127.5 - 1
    old = base.predict(xb, verbose=0)            # base's own network, built before the fit
    for m in (model, flat):
        aslnet.utils.set_random_seed(3)
        m.compile(Adam(1e-2), "categorical_crossentropy")
        m.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    after = base.get_weights()
    assert not np.array_equal(before[0], after[0])          # conv kernel moved
    for a, b in zip(model.get_weights(), flat.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # base's own network sees the new weights (a fresh copy computes the same)
    twin = _base(name="copy")
    twin.set_weights(base.get_weights())
    new = base.predict(xb, verbose=0)
    assert not np.array_equal(old, new)
    np.testing.assert_array_equal(new, twin.predict(xb, verbose=0))


def test_frozen_base_is_unchanged_by_fit_and_unfreezes_per_layer():
    base = _base()
    model = _nested(base)
    base.trainable = False
    assert not any(l.trainable for l in base.layers)
    before = [w.copy() for w in base.get_weights()]
    head = [w.copy() for w in model.get_layer("head").get_weights()]
    x, y = _data()
    model.compile(Adam(1e-2), "categorical_crossentropy")
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    for a, b in zip(before, base.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(head[0], model.get_layer("head").get_weights()[0])
    # fine-tuning: unfreeze the base, freeze its first layers, recompile
    base.trainable = True
    for layer in base.layers[:4]:
        layer.trainable = False
    model.compile(Adam(1e-2), "categorical_crossentropy")
    assert len(model.trainable_variables) == 1 + 2 + 2   # dw, bn2 gamma/beta, head
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    after = base.get_weights()
    np.testing.assert_array_equal(before[0], after[0])        # c1 frozen
    assert not np.array_equal(before[5], after[5])            # dw trained


def test_training_false_keeps_trainable_batch_norm_in_inference_mode():
    base = _base()
    model = _nested(base, training=False)
    bn = base.get_layer("base_bn2")
    assert bn.trainable
    stats = [bn.moving_mean.numpy(), bn.moving_variance.numpy()]
    gamma = bn.gamma.numpy()
    x, y = _data()
    model.compile(Adam(1e-2), "categorical_crossentropy")
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    np.testing.assert_array_equal(stats[0], bn.moving_mean.numpy())
    np.testing.assert_array_equal(stats[1], bn.moving_variance.numpy())
    assert not np.array_equal(gamma, bn.gamma.numpy())        # gamma still trains
    # without training=False the same fit moves the statistics (the test can fail)
    base2 = _base()
    model2 = _nested(base2)
    model2.compile(Adam(1e-2), "categorical_crossentropy")
    model2.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert not np.array_equal(stats[0], base2.get_layer("base_bn2").moving_mean.numpy())


def test_training_false_loss_is_the_inference_loss():
    """With everything frozen but the head, training=False or not, fit's
    first-step loss equals evaluate's loss on the same weights."""
    base = _base()
    model = _nested(base, training=False)
    x, y = _data(8)
    model.compile(Adam(0.0), "categorical_crossentropy")
    loss = model.evaluate(x, y, batch_size=8, verbose=0)
    hist = model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(hist.history["loss"][0], loss, rtol=1e-5)


def test_sequential_with_a_base_counts_as_keras(capsys):
    base = aslnet.applications.MobileNet(include_top=False, input_shape=(128, 128, 3),
                                         weights=None)
    model = Sequential([base, L.GlobalAveragePooling2D(), L.Dense(3)])
    assert len(model.layers) == 3 and model.layers[0] is base
    assert model.count_params() == 3_231_939          # Keras 3's number
    assert model.input_shape == (None, 128, 128, 3) and model.output_shape == (None, 3)
    base.trainable = False
    model.summary()
    out = capsys.readouterr().out
    assert "Total params: 3,231,939" in out and "Trainable params: 3,075" in out
    assert "mobilenet_1.00_128 (Function" in out      # (tf.keras 2 cuts the column)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 128, 128, 3)).astype(np.float32)
    feats = base.predict(x, verbose=0).mean(axis=(1, 2))
    head = model.layers[-1].get_weights()
    np.testing.assert_allclose(model.predict(x, verbose=0), feats @ head[0] + head[1],
                               rtol=1e-4, atol=1e-4)


def test_deferred_sequential_is_built_on_its_first_call():
    aug = Sequential([L.RandomFlip("horizontal"), L.RandomRotation(0.2)])
    assert len(aug.layers) == 2
    inp = aslnet.Input((8, 8, 3))
    x = aug(inp)
    assert aug.input_shape == (None, 8, 8, 3)
    model = Model(inp, L.Dense(2)(L.GlobalAveragePooling2D()(x)))
    assert [type(l).__name__ for l in model.layers] == ["InputLayer", "Sequential",
                                                          "GlobalAveragePooling2D", "Dense"]
    x, _ = _data(2)
    assert model.predict(x, verbose=0).shape == (2, 2)


def test_nested_refusals():
    base = _base()
    _nested(base)
    inp = aslnet.Input((8, 8, 3))
    x = base(inp)
    with pytest.raises(NotImplementedError, match="'base' is called twice in this model"):
        Model(inp, L.Add()([x, base(inp)]))
    other = _base(name="other")
    with pytest.raises(ValueError, match=r"expects input shape \(None, 8, 8, 3\)"):
        other(aslnet.Input((9, 9, 3)))
    with pytest.raises(NotImplementedError, match="training=True"):
        other(aslnet.Input((8, 8, 3)), training=True)


@pytest.mark.parametrize("frozen", [False, True])
def test_nested_model_saves_and_loads_as_h5(tmp_path, frozen):
    base = _base()
    model = _nested(base, training=False)
    x, y = _data()
    model.compile(Adam(1e-2), "categorical_crossentropy")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    base.trainable = not frozen
    model.save(tmp_path / "m.h5")
    back = aslnet.models.load_model(tmp_path / "m.h5")
    assert [l.name for l in back.layers] == [l.name for l in model.layers]
    nested = back.get_layer("base")
    assert isinstance(nested, Model) and back._nodes[nested]._training is False  # kept
    assert [l.trainable for l in nested.layers[1:]] == [l.trainable for l in base.layers[1:]]
    np.testing.assert_array_equal(back.predict(x, verbose=0), model.predict(x, verbose=0))
    assert back.get_optimizer_state()["iterations"] == 2
    # Keras's layout: one weights group named after the nested model
    import h5py
    with h5py.File(tmp_path / "m.h5") as f:
        names = [n.decode() for n in f["model_weights"].attrs["layer_names"]]
        assert names == ["outer_in", "pre", "base", "gap", "head"]
        assert "base_c1/kernel:0" in [n.decode() for n in
                                      f["model_weights/base"].attrs["weight_names"]]
    # weights alone, and a Sequential around a base
    model.save_weights(tmp_path / "w.h5")
    other = _nested(_base(seed=4))
    other.get_layer("base").trainable = not frozen   # (Keras's h5 order: trainable first)
    other.load_weights(tmp_path / "w.h5")
    np.testing.assert_array_equal(other.predict(x, verbose=0), model.predict(x, verbose=0))
    seq = Sequential([_base(name="b2"), L.GlobalAveragePooling2D(), L.Dense(2)])
    seq.save(tmp_path / "s.h5")
    seq2 = aslnet.models.load_model(tmp_path / "s.h5", compile=False)
    assert [type(l).__name__ for l in seq2.layers] == ["Model", "GlobalAveragePooling2D",
                                                        "Dense"]
    xb = x / 127.5 - 1
    np.testing.assert_array_equal(seq2.predict(xb, verbose=0), seq.predict(xb, verbose=0))
    assert aslnet.models.clone_model(seq).count_params() == seq.count_params()


def test_nested_keras3_archive_is_refused_clearly(tmp_path):
    model = _nested(_base())
    for call in (lambda: model.save(tmp_path / "m.keras"),
                 lambda: model.save_weights(tmp_path / "m.weights.h5")):
        with pytest.raises(NotImplementedError, match="nested model"):
            call()
    assert not (tmp_path / "m.keras").exists()


def test_nested_model_exports_to_onnx_flattened(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    model = _nested(_base(), pre=False)          # (Rescaling has no ONNX export)
    path = tmp_path / "m.onnx"
    model.export(path, format="onnx")
    x, _ = _data(4)
    sess = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, model.predict(x, verbose=0), rtol=1e-4, atol=1e-5)


def test_copy_of_nested_model_predicts_the_same():
    import copy
    model = _nested(_base())
    x, _ = _data(4)
    twin = copy.deepcopy(model)
    np.testing.assert_array_equal(twin.predict(x, verbose=0), model.predict(x, verbose=0))
    assert twin.get_layer("base") is not model.get_layer("base")


def _fit_head(model, cache_bytes, x, y):
    model.trunk_cache_bytes = cache_bytes
    aslnet.utils.set_random_seed(5)
    model.compile(Adam(1e-2), "categorical_crossentropy")
    model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
    return model.get_layer("head").get_weights()


@pytest.mark.parametrize("training", [None, False])
def test_frozen_nested_base_trains_the_same_from_the_trunk_cache(training):
    x, y = _data()
    got = []
    for cache_bytes in (0, 1 << 30):
        base = _base()
        base.trainable = False
        model = _nested(base, training=training)
        if training is False:     # the base's ops carry inference=True
            assert model._core().inference
        got.append(_fit_head(model, cache_bytes, x, y))
        # the trunk (cached when it may be) ends below the head, the first trainable layer
        assert model._trunk_start() == model._net.first_op(model.get_layer("head"))
    for a, b in zip(*got):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_sequential_pop_and_add_around_a_nested_model():
    base = _base()
    model = Sequential([base, L.GlobalAveragePooling2D(name="gap"), L.Dense(3, name="d3")])
    x, _ = _data(2)
    xb = x / 127.5 - 1
    assert model.predict(xb, verbose=0).shape == (2, 3)
    model.pop()
    model.pop()
    assert model.layers == [base] and model.output_shape == (None, 8, 8, 8)
    np.testing.assert_array_equal(model.predict(xb, verbose=0), base.predict(xb, verbose=0))
    model.pop()
    model.add(base)                      # the node was released: it can be used again
    model.add(L.Flatten())
    assert model.output_shape == (None, 512)


def test_optimizer_state_of_a_nested_model_round_trips():
    base = _base()
    model = _nested(base)
    x, y = _data(8)
    model.compile(Adam(1e-2), "categorical_crossentropy")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    state = model.get_optimizer_state()
    assert ("base_c1", 0, 0) in state["slots"]
    model.set_optimizer_state(state)
    np.testing.assert_array_equal(model.get_optimizer_state()["slots"][("base_c1", 0, 1)],
                                  state["slots"][("base_c1", 0, 1)])


def test_training_false_turns_off_a_nested_dropout():
    x, y = _data(8)
    losses = []
    for training in (False, None):
        aslnet.utils.set_random_seed(2)
        inp = aslnet.Input((8, 8, 3))
        h = L.GlobalAveragePooling2D()(L.Rescaling(1 / 255.0)(inp))
        drop = Sequential([L.Dropout(0.9)])
        h = drop(h, training=training) if training is not None else drop(h)
        model = Model(inp, L.Dense(3, activation="softmax", name="head")(h))
        model.compile(Adam(0.0), "categorical_crossentropy")
        losses.append((model.evaluate(x, y, batch_size=8, verbose=0),
                       model.fit(x, y, batch_size=8, epochs=1, verbose=0).history["loss"][0]))
    np.testing.assert_allclose(losses[0][1], losses[0][0], rtol=1e-5)   # no dropout
    assert abs(losses[1][1] - losses[1][0]) > 1e-4                        # dropout on


@pytest.mark.keras
def test_nested_h5_loads_in_keras3_with_the_same_outputs(tmp_path):
    keras = pytest.importorskip("keras")
    if not keras.__version__.startswith("3."):
        pytest.skip(f"needs Keras 3, found {keras.__version__}")
    base = _base()
    model = _nested(base, training=False)
    model.save(tmp_path / "m.h5")
    kmodel = keras.models.load_model(tmp_path / "m.h5", compile=False)
    assert [l.name for l in kmodel.layers] == [l.name for l in model.layers]
    assert kmodel.count_params() == model.count_params()
    assert len(kmodel.get_layer("base").layers) == len(base.layers)
    x, _ = _data(4)
    np.testing.assert_allclose(np.asarray(kmodel.predict(x, verbose=0)),
                               model.predict(x, verbose=0), rtol=1e-4, atol=1e-5)
    # (a Sequential around a base: aslnet reads its h5 back, Keras 3's legacy loader
    # does not -- "Layer 'dense' expects 1 input(s), but it received 2" -- not checked here)


def test_one_base_in_two_outer_models_shares_its_weights():
    base = _base()
    train_model = _nested(base)
    inp = aslnet.Input((8, 8, 3))
    infer_model = Model(inp, L.GlobalAveragePooling2D()(base(L.Rescaling(1 / 127.5,
                                                                        offset=-1)(inp))))
    x, y = _data()
    before = infer_model.predict(x, verbose=0)
    train_model.compile(Adam(1e-2), "categorical_crossentropy")
    train_model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    after = infer_model.predict(x, verbose=0)
    assert not np.array_equal(before, after)                  # it sees the trained base
    twin = _base(name="twin2")
    twin.set_weights(base.get_weights())
    np.testing.assert_allclose(after, twin.predict(x / 127.5 - 1, verbose=0).mean(axis=(1, 2)),
                               rtol=1e-5, atol=1e-6)
