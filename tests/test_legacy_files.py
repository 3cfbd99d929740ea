"""Files written by aslnet 0.1 before the package was reorganised (an .h5
saved with ``model.save`` and a pickled model, made by ``tools/golden.py
--artifacts``) still load and predict what they predicted then."""
import pickle
from pathlib import Path

import numpy as np

from aslnet.models import load_model

LEGACY = Path(__file__).parent / "data" / "legacy-0.1"

# The model is 3 convolutions (fan-in <= 144), pooling and a 32->5 Dense: each
# output is a float32 sum of a few hundred products, so a different kernel
# order (another CPU's oneDNN ISA) moves a probability by well under 1e-5.
ATOL = 1e-5


def _check(model):
    x = np.load(LEGACY / "small.input.npy")
    want = np.load(LEGACY / "small.predict.npy")
    got = model.predict(x, verbose=0)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)


def test_h5_from_0_1_loads_and_predicts():
    model = load_model(LEGACY / "small.h5")
    _check(model)
    assert model.optimizer is not None and model.get_optimizer_state()["iterations"] == 10


def test_pickle_from_0_1_loads_and_predicts():
    model = pickle.loads((LEGACY / "small.pkl").read_bytes())
    _check(model)
    assert model.get_optimizer_state()["iterations"] == 10
