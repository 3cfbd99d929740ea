"""aslnet.utils.split_dataset: the tutorial's split, reproducible, non-destructive and atomic."""
import os
import warnings

import numpy as np
import pytest
from PIL import Image

from aslnet.utils import dataset, split_dataset


@pytest.fixture
def src(tmp_path):
    """Three classes of 12 tiny PNGs (class 'c' also has a text file and a broken image)."""
    root = tmp_path / "digits"
    rng = np.random.RandomState(0)
    for cls in "abc":
        (root / cls).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.randint(0, 256, (4, 4, 3), dtype=np.uint8)).save(
                root / cls / f"img{i:02d}.png")
    (root / "c" / "README.txt").write_text("not an image")
    (root / "c" / "broken.png").write_text("not an image either")
    (root / "LICENSE").write_text("not a class")
    return root


def snapshot(root):
    """{relative path: (bytes, mtime_ns)} of every file under root."""
    out = {}
    for d, _, names in os.walk(root):
        for name in names:
            path = os.path.join(d, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = (f.read(), os.stat(path).st_mtime_ns)
    return out


def listing(dst):
    return {sub: {cls: sorted(os.listdir(dst / sub / cls)) for cls in sorted(os.listdir(dst / sub))}
            for sub in ("train", "valid", "test")}


def split(src, dst, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return split_dataset(src, dst, **kwargs)


@pytest.mark.parametrize("mode", ["copy", "link", "symlink"])
def test_split_counts_layout_and_source_untouched(src, tmp_path, mode):
    before = snapshot(src)
    dst = tmp_path / "split"
    with pytest.warns(UserWarning, match="broken.png"):
        summary = split_dataset(src, dst, valid=3, test=2, seed=0, mode=mode)
    assert summary == {"train": {"a": 7, "b": 7, "c": 7}, "valid": {"a": 3, "b": 3, "c": 3},
                       "test": {"a": 2, "b": 2, "c": 2}}
    assert sorted(os.listdir(dst)) == ["test", "train", "valid"]
    files = listing(dst)
    for cls in "abc":
        parts = [set(files[sub][cls]) for sub in ("train", "valid", "test")]
        assert set.union(*parts) == {f"img{i:02d}.png" for i in range(12)}
        assert sum(map(len, parts)) == 12  # disjoint
        for sub in ("train", "valid", "test"):
            for name in files[sub][cls]:
                placed = dst / sub / cls / name
                assert placed.read_bytes() == (src / cls / name).read_bytes()
                assert placed.is_symlink() == (mode == "symlink")
                if mode == "link":
                    assert os.path.samefile(placed, src / cls / name)
    assert snapshot(src) == before
    assert not [p for p in os.listdir(tmp_path) if "partial" in p]


def test_fractions_round_down(src, tmp_path):
    summary = split(src, tmp_path / "s", valid=0.25, test=0.1)
    assert summary["valid"] == {"a": 3, "b": 3, "c": 3}
    assert summary["test"] == {"a": 1, "b": 1, "c": 1}
    assert summary["train"] == {"a": 8, "b": 8, "c": 8}


def test_tutorial_defaults_on_a_small_set(src, tmp_path):
    with pytest.raises(ValueError, match="too few"):
        split(src, tmp_path / "s")  # 30 valid + 5 test per class > 12
    assert not (tmp_path / "s").exists()


def test_reproducible_and_seeded(src, tmp_path):
    split(src, tmp_path / "one", valid=3, test=2, seed=4)
    split(src, tmp_path / "two", valid=3, test=2, seed=4)
    split(src, tmp_path / "other", valid=3, test=2, seed=5)
    assert listing(tmp_path / "one") == listing(tmp_path / "two")
    assert listing(tmp_path / "one") != listing(tmp_path / "other")


def test_same_split_again_is_a_no_op(src, tmp_path):
    dst = tmp_path / "split"
    first = split(src, dst, valid=3, test=2)
    before = snapshot(dst)
    assert split(src, dst, valid=3, test=2, mode="symlink") == first
    assert snapshot(dst) == before


def test_refuses_to_overwrite_another_split(src, tmp_path):
    dst = tmp_path / "split"
    split(src, dst, valid=3, test=2, seed=0)
    before = snapshot(dst)
    for kwargs in ({"seed": 1}, {"valid": 4}):
        with pytest.raises(FileExistsError):
            split(src, dst, **{"valid": 3, "test": 2, **kwargs})
    (src / "a" / "img00.png").write_bytes((src / "a" / "img01.png").read_bytes() + b"\0")
    with pytest.raises(FileExistsError):  # a source file changed since
        split(src, dst, valid=3, test=2, seed=0)
    assert snapshot(dst) == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "mine.txt").write_text("user data")
    with pytest.raises(FileExistsError):
        split(src, other, valid=3, test=2)
    assert os.listdir(other) == ["mine.txt"]


def test_empty_destination_folder_is_used(src, tmp_path):
    (tmp_path / "split").mkdir()
    assert split(src, tmp_path / "split", valid=1, test=1)["train"]["a"] == 10


def test_interrupted_split_leaves_nothing(src, tmp_path, monkeypatch):
    calls = []

    def failing_copy(a, b):
        calls.append(a)
        if len(calls) == 10:
            raise KeyboardInterrupt
        os.symlink(a, b)
    monkeypatch.setitem(dataset._PLACERS, "copy", failing_copy)
    with pytest.raises(KeyboardInterrupt):
        split(src, tmp_path / "split", valid=3, test=2)
    assert sorted(os.listdir(tmp_path)) == ["digits"]


def test_bad_arguments(src, tmp_path):
    for kwargs in ({"mode": "move"}, {"valid": -1}, {"test": 1.5}):
        with pytest.raises(ValueError):
            split(src, tmp_path / "s", **kwargs)
    with pytest.raises(ValueError, match="outside"):
        split(src, src / "split", valid=1, test=1)
    with pytest.raises(FileNotFoundError):
        split(tmp_path / "missing", tmp_path / "s")


def test_shared_dataset_tutorial_split(shared_dir, tmp_path):
    root = shared_dir / "data" / "sign-language-digits"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    summary = split(root, tmp_path / "split", mode="symlink")
    assert summary["valid"] == {str(d): 30 for d in range(10)}
    assert summary["test"] == {str(d): 5 for d in range(10)}
    assert sum(summary["train"].values()) == 1768 - 350


def test_hidden_folders_are_not_classes(src, tmp_path):
    """Jupyter's .ipynb_checkpoints beside the class folders would become class 0 and shift
    every label; it is not a class."""
    (src / ".ipynb_checkpoints").mkdir()
    Image.new("RGB", (4, 4)).save(src / ".ipynb_checkpoints" / "x.png")
    summary = split_dataset(src, tmp_path / "out", valid=2, test=1)
    assert sorted(summary["train"]) == ["a", "b", "c"]
    assert sorted(os.listdir(tmp_path / "out" / "train")) == ["a", "b", "c"]


def test_truncated_images_are_left_out_with_a_warning(src, tmp_path):
    path = src / "a" / "img03.png"
    data = path.read_bytes()
    big = np.random.RandomState(1).randint(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(big).save(path)                      # a real image, then cut in half
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    assert data != path.read_bytes()
    with pytest.warns(UserWarning, match="img03.png: it does not decode"):
        summary = split_dataset(src, tmp_path / "out", valid=2, test=1)
    assert summary["train"]["a"] == 8
    assert all("img03.png" not in os.listdir(tmp_path / "out" / s / "a")
               for s in ("train", "valid", "test"))


def test_dst_inside_src_through_a_symlink_is_refused(src, tmp_path):
    os.symlink(src, tmp_path / "alias")
    before = snapshot(src)
    with pytest.raises(ValueError, match="outside src"):
        split_dataset(src, tmp_path / "alias" / "split", valid=2, test=1)
    with pytest.raises(ValueError, match="outside src"):
        split_dataset(tmp_path / "alias", src / "split", valid=2, test=1)
    assert snapshot(src) == before


def test_the_split_folder_gets_the_usual_permissions(src, tmp_path):
    umask = os.umask(0o022)
    try:
        split_dataset(src, tmp_path / "out", valid=2, test=1)
    finally:
        os.umask(umask)
    assert os.stat(tmp_path / "out").st_mode & 0o777 == 0o755
