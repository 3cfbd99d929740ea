"""The fine_tune recipe."""
import numpy as np
import pytest

import aslnet
from aslnet import layers as L
from aslnet.models import Model
from aslnet.optimizers import SGD, Adam

from tests.model_fixtures import data, small_model


def test_fine_tune_phase_2_goes_on_with_phase_1_s_adam():
    from aslnet.preprocessing.image import ImageDataGenerator
    x, y = data(8)
    model = small_model()
    flow = ImageDataGenerator().flow(x, y, batch_size=4, shuffle=False)
    unfreeze = model.layers[4].name                      # the depthwise convolution
    h = model.fine_tune(flow, head_epochs=2, epochs=1, unfreeze_from=unfreeze, verbose=0)
    assert len(model.head_history.history["loss"]) == 2 and len(h.history["loss"]) == 1
    assert model.optimizer.iterations == (2 + 1) * 2     # one Adam across both phases
    assert model.optimizer.learning_rate == 2e-5
    assert [l.trainable for l in model.layers[4:]] == [
        not isinstance(l, L.BatchNormalization) for l in model.layers[4:]]
