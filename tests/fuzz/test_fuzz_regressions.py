"""The fuzz targets (tools/fuzz/) on their seeds, and every input the fuzzers
found that broke a loader, as regressions (inputs in tests/fuzz/crashes/)."""
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "tools" / "fuzz"))
import fuzz_h5  # noqa: E402
import fuzz_image  # noqa: E402
import fuzz_tflite  # noqa: E402
import seeds  # noqa: E402

CRASHES = Path(__file__).parent / "crashes"


@pytest.fixture
def tflite_folder(tmp_path, monkeypatch):
    """A weights folder read without its SHA-256 check (as the fuzz target does)."""
    from aslnet import pretrained
    monkeypatch.setattr(pretrained, "resolve_weights_dir", lambda explicit=None: Path(explicit))
    (tmp_path / pretrained.EMBEDDING_FILE).write_bytes(seeds.tiny_mobilenet_v1_tflite())
    (tmp_path / pretrained.HEAD_FILE).write_bytes(seeds.tiny_head_tflite())
    return tmp_path


def test_tflite_seeds_are_what_the_readers_take(tflite_folder):
    from aslnet import pretrained
    weights = pretrained.mobilenet_v1_weights(tflite_folder)
    assert weights["conv1"][0].shape == (3, 3, 3, 1)
    assert weights["conv_pw_13"][0].shape == (1, 1, 1, 1)
    assert weights["conv_preds"][0].shape == (1, 1, 1, 3)      # background dropped
    assert pretrained.imagenet_head(tflite_folder)[0].shape == (1, 1, 1, 4)


@pytest.mark.parametrize("target, make", [(fuzz_tflite, fuzz_tflite.seed_files),
                                          (fuzz_h5, fuzz_h5.seed_files),
                                          (fuzz_image, fuzz_image.seed_files)],
                         ids=["tflite", "h5", "image"])
def test_fuzz_target_runs_its_seeds(target, make, tmp_path, monkeypatch):
    from PIL import Image

    from aslnet import pretrained, serving
    # what each target's _setup() sets for the whole fuzzing process
    monkeypatch.setattr(pretrained, "resolve_weights_dir", lambda explicit=None: Path(explicit))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", fuzz_image.PIXELS)
    monkeypatch.setattr(serving, "MAX_IMAGE_PIXELS", fuzz_image.PIXELS)
    files = make()
    assert files
    for data in files.values():
        target.one_input(data)          # raises on anything but a documented error
        target.one_input(data[:len(data) // 2])     # truncated


def test_tflite_operator_without_options(tflite_folder):
    """Found by fuzz_tflite: an operator whose options table is absent made
    mobilenet_v1_weights raise KeyError('stride_h')."""
    from aslnet import pretrained
    (tflite_folder / pretrained.EMBEDDING_FILE).write_bytes(
        seeds.tiny_mobilenet_v1_tflite(without_options=(2,)))
    with pytest.raises(ValueError, match="not the expected MobileNet v1 layout: operator 2"):
        pretrained.mobilenet_v1_weights(tflite_folder)
    (tflite_folder / pretrained.EMBEDDING_FILE).write_bytes(seeds.tiny_mobilenet_v1_tflite())
    (tflite_folder / pretrained.HEAD_FILE).write_bytes(
        seeds.tiny_mobilenet_v1_tflite(without_options=(0,)))
    with pytest.raises(ValueError, match="first operator"):
        pretrained.imagenet_head(tflite_folder)


def test_tflite_tensor_without_name(tmp_path):
    """Found by fuzz_tflite: a tensor without a name made read_tflite raise
    AttributeError ('NoneType' object has no attribute 'decode')."""
    from aslnet._tflite import read_tflite
    path = tmp_path / "m.tflite"
    path.write_bytes((CRASHES / "tflite-tensor-without-name.bin").read_bytes())
    try:
        model = read_tflite(path)
    except ValueError as e:
        assert str(e).startswith(str(path))
    else:
        assert any(t.name.startswith("tensor ") for t in model.tensors)
    fuzz_tflite.one_input(path.read_bytes())


@pytest.fixture
def quick_probe(monkeypatch):
    """aslnet.saving.h5_probe with a short time limit (as the fuzz target sets it)."""
    from aslnet.saving import h5_probe
    monkeypatch.setattr(h5_probe, "TIMEOUT_S", 3.0)
    monkeypatch.setattr(h5_probe, "_SEEN", {})
    return h5_probe


def test_h5_corrupt_heap_does_not_hang(tmp_path, quick_probe):
    """Found by fuzz_h5: libhdf5 1.14.6 (h5py 3.14) spins forever reading the
    model_config attribute of this file (a corrupt global heap).  The file is read
    first in a child process, stopped at its time limit."""
    import time

    import aslnet.models
    from aslnet.saving import ModelFileError
    path = tmp_path / "m.h5"
    path.write_bytes((CRASHES / "h5-hdf5-hang-model-config.bin").read_bytes())
    t0 = time.monotonic()
    with pytest.raises(ModelFileError, match="m.h5 is corrupt: libhdf5 did not finish"):
        aslnet.models.load_model(path)
    assert time.monotonic() - t0 < 30


def test_h5_corrupt_attribute_does_not_crash(tmp_path, quick_probe):
    """Found by fuzz_h5 (session 10's stop failed on a sibling): libhdf5 (1.14.6 and
    2.0.0) segfaults reading a root attribute of this file.  The crash happens in the
    child process; here it is a ModelFileError, for load_model and load_weights."""
    import aslnet.models
    from aslnet.saving import ModelFileError
    path = tmp_path / "m.h5"
    path.write_bytes((CRASHES / "h5-hdf5-segv-root-attribute.bin").read_bytes())
    with pytest.raises(ModelFileError, match="m.h5 is corrupt: libhdf5 crashed reading it"):
        aslnet.models.load_model(path)
    with pytest.raises(ModelFileError, match="m.h5 is corrupt: libhdf5 crashed"):
        seeds.tiny_model().load_weights(path)
    fuzz_h5.one_input(path.read_bytes())


def _png_broken_after_first_idat(bit_depth, color_type, channels):
    """A PNG whose image data is split over two chunks, the second with a chunk type
    that is not letters: Image.open succeeds, decoding fails."""
    import struct
    import zlib

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff))
    w, h = 7, 5
    row = bytes(range(w * channels * bit_depth // 8))
    z = zlib.compress(b"".join(b"\0" + row for _ in range(h)))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0))
            + chunk(b"IDAT", z[:10]) + chunk(b"R\x00\x86j", z[10:]) + chunk(b"IEND", b""))


@pytest.mark.parametrize("color_mode", ["rgb", "grayscale", "rgba"])
def test_load_img_broken_png_chunk(color_mode, tmp_path):
    """Found by fuzz_image (in .ci/run): Pillow's SyntaxError ('broken PNG file') came
    out of load_img (or, for an image already in the asked mode, img_to_array)."""
    import io

    from aslnet.preprocessing.image import img_to_array, load_img
    data = _png_broken_after_first_idat(8, 2, 3)
    with pytest.raises(OSError, match=r"image: not a readable image \(SyntaxError"):
        img_to_array(load_img(io.BytesIO(data), color_mode=color_mode))
    path = tmp_path / "broken.png"
    path.write_bytes(data)
    with pytest.raises(OSError, match="broken.png: not a readable image"):
        load_img(path, color_mode=color_mode)
    fuzz_image.one_input(data)


@pytest.mark.parametrize("color_mode", ["rgb", "grayscale"])
def test_serving_decoder_broken_16_bit_png(color_mode):
    """The same file as a 16-bit grayscale PNG: the web app's decoder raised SyntaxError
    (found against serving's eight_bit_image, now serving.images.decode_image)."""
    from aslnet.serving.images import decode_image
    with pytest.raises((OSError, ValueError), match="(?i)not a readable image|image"):
        decode_image(_png_broken_after_first_idat(16, 0, 1), (4, 4), color_mode)


@pytest.mark.parametrize("color_mode", ["rgb", "grayscale"])
def test_tiff_rational_strip_offset(color_mode):
    """Found by fuzz_image in CI (session 6's stop failed on it): a TIFF whose
    StripOffsets tag is a RATIONAL; Pillow's load() raised TypeError ('IFDRational'
    object cannot be interpreted as an integer) out of serving's decode_image."""
    import io

    from aslnet.preprocessing.image import img_to_array, load_img
    from aslnet.serving.images import ImageError, decode_image
    data = (CRASHES / "image-tiff-rational-strip-offset.bin").read_bytes()
    with pytest.raises(ImageError, match=r"not a readable image \(TypeError"):
        decode_image(data, (4, 4), color_mode)
    with pytest.raises(OSError, match=r"not a readable image \(TypeError"):
        img_to_array(load_img(io.BytesIO(data), color_mode=color_mode))
    fuzz_image.one_input(data)
