"""aslnet.data.Dataset: the tf.data methods Keras scripts chain, checked against tf.data itself
where TensorFlow is installed; the sample ids that let fit cache the frozen trunk (exactly)."""
import os
import threading

import numpy as np
import pytest

import aslnet
import aslnet.data
from aslnet.data import AUTOTUNE, Dataset
from aslnet.optimizers import Adam
from aslnet.trainers import data_adapters
from tests.model_fixtures import data, small_model


def _tf():
    try:
        return pytest.importorskip("tensorflow")
    except ImportError as exc:   # installed but broken
        pytest.skip(f"TensorFlow does not import: {exc}")


def _values(ds):
    out = []
    for e in ds:
        out.append(tuple(np.asarray(v).tolist() for v in e) if isinstance(e, tuple)
                   else np.asarray(e).tolist())
    return out


CHAINS = [
    ("take", lambda d: d.take(4)),
    ("take_all", lambda d: d.take(-1)),
    ("take_0", lambda d: d.take(0)),
    ("skip", lambda d: d.skip(3)),
    ("skip_all", lambda d: d.skip(-1)),
    ("batch", lambda d: d.batch(3)),
    ("batch_drop", lambda d: d.batch(3, drop_remainder=True)),
    ("batch_unbatch", lambda d: d.batch(4).unbatch()),
    ("batch_batch", lambda d: d.batch(2).batch(2)),
    ("repeat_take", lambda d: d.repeat().take(23)),
    ("repeat2_batch", lambda d: d.repeat(2).batch(4)),
    ("skip_take_batch", lambda d: d.skip(2).take(5).batch(2)),
    ("map", lambda d: d.map(lambda x, y: (x * 2, y + 1)).batch(4)),
    ("prefetch_cache", lambda d: d.batch(3).prefetch(2).cache().prefetch(AUTOTUNE)),
]


@pytest.mark.keras
@pytest.mark.parametrize("name,chain", CHAINS, ids=[c[0] for c in CHAINS])
def test_chains_yield_what_tf_data_yields(name, chain):
    tf = _tf()
    x = np.arange(10, dtype=np.float32).reshape(10, 1) * np.ones((1, 2), np.float32)
    y = np.arange(10, dtype=np.int32)
    ours = chain(Dataset.from_tensor_slices((x, y)))
    theirs = chain(tf.data.Dataset.from_tensor_slices((x, y)))
    assert _values(ours) == [tuple(np.asarray(v).tolist() for v in e) for e in theirs]
    assert _values(ours) == _values(ours)            # a second pass is the same
    assert ours.cardinality() == theirs.cardinality().numpy()
    assert isinstance(ours.cardinality(), np.integer)


@pytest.mark.keras
def test_cardinality_and_len_as_tf_data():
    tf = _tf()
    assert (aslnet.data.AUTOTUNE, aslnet.data.INFINITE_CARDINALITY,
            aslnet.data.UNKNOWN_CARDINALITY) == (tf.data.AUTOTUNE, tf.data.INFINITE_CARDINALITY,
                                                 tf.data.UNKNOWN_CARDINALITY)
    for chain in (lambda d: d.repeat(), lambda d: d.batch(2).unbatch(),
                  lambda d: d.repeat().take(7), lambda d: d.repeat().skip(3),
                  lambda d: d.batch(3).repeat(3)):
        ours = chain(Dataset.from_tensor_slices(np.arange(10)))
        theirs = chain(tf.data.Dataset.from_tensor_slices(np.arange(10)))
        assert ours.cardinality() == theirs.cardinality().numpy()
        if theirs.cardinality() < 0:
            with pytest.raises(TypeError) as ours_err:
                len(ours)
            with pytest.raises(TypeError) as tf_err:
                len(theirs)
            assert str(ours_err.value) == str(tf_err.value)
        else:
            assert len(ours) == len(theirs)


def test_shuffle_is_a_seeded_buffer_shuffle():
    ds = Dataset.from_tensor_slices(np.arange(50))
    a = ds.shuffle(10, seed=3)
    first, second = list(map(int, a)), list(map(int, a))
    assert sorted(first) == list(range(50)) and sorted(second) == list(range(50))
    assert first != second                            # reshuffled each pass
    b = ds.shuffle(10, seed=3)
    assert [list(map(int, b)), list(map(int, b))] == [first, second]   # same seed, same orders
    assert list(map(int, ds.shuffle(10, seed=4))) != first
    fixed = ds.shuffle(10, seed=3, reshuffle_each_iteration=False)
    assert list(map(int, fixed)) == list(map(int, fixed))
    # a buffer of k: element i is drawn from the first i + k elements, so it never comes
    # out before position i - k + 1 (tf.data's semantics); a buffer of 1 changes nothing
    for pos, i in enumerate(first):
        assert pos >= i - 10 + 1
    assert list(map(int, ds.shuffle(1, seed=0))) == list(range(50))
    aslnet.set_random_seed(5)
    c = list(map(int, ds.shuffle(10)))
    aslnet.set_random_seed(5)
    assert list(map(int, ds.shuffle(10))) == c       # no seed: reproducible after set_random_seed


def test_cache_replays_the_first_pass_in_memory_and_in_a_file(tmp_path):
    ds = Dataset.from_tensor_slices(np.arange(20)).shuffle(20, seed=0)
    cached = ds.cache()
    first = list(map(int, cached))
    assert list(map(int, cached)) == first           # as tf.data: the shuffled order is kept
    path = tmp_path / "cache.bin"
    on_disk = ds.cache(str(path))
    it = iter(on_disk)
    next(it)
    it.close()                                        # a partial pass records nothing
    assert not path.exists() and os.listdir(tmp_path) == []
    order = list(map(int, on_disk))
    assert path.exists()
    calls = []
    again = Dataset.from_tensor_slices(np.arange(20)).map(
        lambda v: calls.append(1) or v).cache(str(path))
    assert list(map(int, again)) == order and calls == []   # read back from the file


def test_prefetch_propagates_errors_and_stops_its_thread():
    def boom(v):
        if int(v) == 3:
            raise ZeroDivisionError("element 3")
        return v
    before = threading.active_count()
    with pytest.raises(ZeroDivisionError, match="element 3"):
        list(Dataset.from_tensor_slices(np.arange(6)).map(boom).prefetch(2))
    it = iter(Dataset.from_tensor_slices(np.arange(1000)).prefetch(4))
    next(it)
    it.close()                                        # abandoned: its thread ends
    assert threading.active_count() == before


def test_map_runs_numpy_and_eager_tf_and_names_graph_only_failures():
    ds = Dataset.from_tensor_slices((np.ones((4, 3), np.float32), np.arange(4))).batch(2)
    x, y = next(iter(ds.map(lambda x, y: (x * 2, y))))
    assert x.numpy().tolist() == [[2.0] * 3] * 2 and isinstance(x, np.ndarray)
    with pytest.raises(ValueError, match="operands could not be broadcast"):   # NumPy: as is
        list(ds.map(lambda x, y: (x + np.ones(7), y)))
    tf = _tf()
    x, _ = next(iter(ds.map(lambda x, y: (tf.cast(x, tf.float32) + 1, y))))
    assert type(x).__module__.startswith("aslnet") and x.tolist() == [[2.0] * 3] * 2
    with pytest.raises(TypeError, match="not tf.data graphs.*NumPy"):
        list(ds.map(lambda x, y: (tf.reshape(x, [7]), y)))


def test_bad_arguments_are_refused():
    ds = Dataset.from_tensor_slices(np.arange(4))
    for call, match in [(lambda: ds.batch(0), "batch_size"), (lambda: ds.take(-2), "count"),
                        (lambda: ds.take(1.5), "count"), (lambda: ds.shuffle(0), "buffer_size"),
                        (lambda: ds.prefetch(0), "buffer_size"), (lambda: ds.map(3), "callable"),
                        (lambda: ds.shuffle(4, seed=-1), "seed")]:
        with pytest.raises((ValueError, TypeError), match=match):
            call()
    with pytest.raises(ValueError, match="different lengths"):
        Dataset.from_tensor_slices((np.arange(3), np.arange(4)))
    with pytest.raises(ValueError, match="cannot be stacked"):
        list(Dataset.from_tensor_slices(np.arange(4)).map(lambda v: np.ones(int(v))).batch(2))


# -- fit: sample ids for the frozen-trunk cache, only while exact --------------------------
def test_sample_ids_survive_reordering_and_are_dropped_by_map():
    x, y = data(n=10)
    ds = Dataset.from_tensor_slices((x, y))
    assert data_adapters.num_samples(ds.shuffle(4, seed=0).batch(3).prefetch(1).cache()) == 10
    assert data_adapters.num_samples(ds.batch(3).map(lambda a, b: (a, b))) is None
    for (xb, _), ids in ds.shuffle(4, seed=0).batch(3).repeat(2)._iter_with_ids():
        np.testing.assert_array_equal(xb, x[ids])     # ids name exactly the rows served
    assert all(ids is None for _, ids in ds.batch(3).map(lambda a, b: (a, b))._iter_with_ids())


@pytest.mark.parametrize("mapped", [False, True])
def test_fit_on_a_dataset_equals_fit_on_arrays(mapped):
    """The same batches in the same order give the same training, with the trunk cache (an
    un-mapped dataset: trunk computed once per sample) or without (mapped: every epoch)."""
    x, y = data(n=20)
    runs = []
    for source in ("arrays", "dataset"):
        model = small_model()
        model.freeze(upto=-4)
        model.compile(Adam(1e-2), "categorical_crossentropy", metrics=["accuracy"])
        if source == "arrays":
            h = model.fit(x, y, batch_size=8, epochs=3, shuffle=False, validation_data=(x, y),
                          verbose=0)
        else:
            ds = Dataset.from_tensor_slices((x, y)).batch(8).prefetch(AUTOTUNE)
            if mapped:
                ds = ds.map(lambda a, b: (a, b))
            h = model.fit(ds, epochs=3, validation_data=ds, verbose=0)
            fwd, _ = model._net.net.layer_calls(model._net.first_op(model.layers[2]))
            # 3 training batches a pass; validation's 3 per epoch go through the cache too
            assert fwd == (3 * 3 + 3 * 3 if mapped else 3 + 3)
        runs.append((h.history, model.get_weights()))
    (ha, wa), (hd, wd) = runs
    assert ha == hd
    for a, b in zip(wa, wd):
        np.testing.assert_array_equal(a, b)


def test_fit_on_a_repeated_dataset_with_steps_per_epoch():
    x, y = data(n=20)
    model = small_model()
    model.freeze(upto=-4)
    model.compile(Adam(1e-2), "categorical_crossentropy", metrics=["accuracy"])
    ds = Dataset.from_tensor_slices((x, y)).shuffle(20, seed=0).batch(8).repeat()
    h = model.fit(ds, steps_per_epoch=3, epochs=4, verbose=0)
    assert len(h.history["loss"]) == 4
    fwd, _ = model._net.net.layer_calls(model._net.first_op(model.layers[2]))
    assert fwd == 3          # 12 steps over 4 passes of 3 batches: the trunk ran in the first
    with pytest.raises(ValueError, match="batch_size"):
        model.fit(ds.take(3), batch_size=8, verbose=0)
    assert model.predict(Dataset.from_tensor_slices(x).batch(6), verbose=0).shape == (20, 3)
