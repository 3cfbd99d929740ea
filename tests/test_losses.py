"""Losses: evaluate's cross-entropy as Keras computes it."""
import numpy as np
import pytest

import aslnet
from aslnet import layers as L
from aslnet.models import Model
from aslnet.optimizers import SGD, Adam


def test_evaluate_loss_of_a_non_softmax_output_is_keras_s():
    """Keras divides non-softmax outputs by their sum, then clips to [1e-7, 1 - 1e-7]."""
    from aslnet.losses import categorical_crossentropy
    p = np.array([[0.5, 0.2, 0.0], [2.0, 1.0, 1.0]], np.float32)
    y = np.eye(3, dtype=np.float32)[[0, 1]]
    np.testing.assert_allclose(categorical_crossentropy(y, p, from_softmax=False),
                               [-np.log(0.5 / 0.7), -np.log(0.25)], rtol=1e-6)
    keras = pytest.importorskip("tensorflow").keras
    np.testing.assert_allclose(categorical_crossentropy(y, p, from_softmax=False),
                               keras.losses.categorical_crossentropy(y, p).numpy(), rtol=1e-6)
