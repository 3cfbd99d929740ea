"""aslnet.utils.Progbar: Keras's progress bar lines."""
import re
import sys
import types

import pytest

from aslnet.utils import Progbar

TIME = r"\d+(s|ms|us)/step"


@pytest.fixture
def notebook(monkeypatch):
    """Pretend to run in Jupyter: the bar is redrawn in place."""
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))


@pytest.fixture
def plain(monkeypatch):
    """Output to a file or pipe (pytest's capture is no terminal)."""
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    monkeypatch.delenv("PYCHARM_HOSTED", raising=False)


def test_verbose_2_prints_one_line_at_the_end(capsys):
    bar = Progbar(3, verbose=2)
    bar.update(1, [("loss", 1.0)])
    bar.update(2, [("loss", 2.0)])
    assert capsys.readouterr().out == ""
    bar.update(3, [("loss", 3.0), ("accuracy", 0.75)])
    out = capsys.readouterr().out
    assert re.fullmatch(r"3/3 - \d+s - loss: 2\.0000 - accuracy: 0\.7500 - \d+(s|ms|us)/epoch"
                        rf" - {TIME}\n", out), out


def test_verbose_1_redraws_in_place_in_notebooks(capsys, notebook):
    bar = Progbar(4, verbose=1, interval=0)
    bar.update(1, [("loss", 0.5)])
    bar.update(2, [("loss", 0.5)])
    bar.update(4, [("loss", 0.5), ("val_loss", 0.25)])
    out = capsys.readouterr().out
    lines = out.split("\r")
    assert lines[0] == "" and out.endswith("\n") and "\n" not in out[:-1]
    assert re.match(r"1/4 \[======>\.{23}\] - ETA: \d+s - loss: 0\.5000", lines[1])
    assert re.match(r"\x08*$", lines[1].split("0.5000")[1].strip(" "))  # erases the old line
    assert re.fullmatch(rf"4/4 \[={{30}}\] - \d+s {TIME} - loss: 0\.5000 - val_loss: 0\.2500\n",
                        lines[-1]), lines[-1]


def test_verbose_1_without_terminal_prints_new_lines(capsys, plain):
    bar = Progbar(2, verbose=1, interval=0)
    bar.update(1)
    bar.update(2)
    out = capsys.readouterr().out
    assert "\r" not in out and out.count("\n") == 3
    assert out.startswith("\n1/2 [" + "=" * 14 + ">" + "." * 15 + "] - ETA:")


def test_values_are_step_weighted_averages_except_stateful_ones(capsys):
    bar = Progbar(4, verbose=2, stateful_metrics=["accuracy"])
    bar.update(1, [("loss", 4.0), ("accuracy", 0.1)])
    bar.update(4, [("loss", 0.0), ("accuracy", 0.9), ("lr", 1e-4)])
    out = capsys.readouterr().out
    assert "loss: 1.0000" in out and "accuracy: 0.9000" in out and "lr: 1.0000e-04" in out


def test_unknown_target_and_add(capsys, notebook):
    bar = Progbar(None, verbose=1, interval=0)
    bar.add(3)
    bar.add(2)
    assert capsys.readouterr().out.split("\r")[-1].startswith("      5/Unknown - ")
    assert Progbar(3, verbose=0).update(3) is None
    assert capsys.readouterr().out == ""
