"""Reading image files as aslnet predict does: shared by the CLI and aslnet.batch."""
import io


def _color_mode(model):
    """The color_mode that feeds ``model`` (as the web app chooses it)."""
    from .serving import _COLOR_MODES
    channels = model.input_shape[-1]
    if channels not in _COLOR_MODES:
        raise ValueError(f"can't feed images to a model with {channels} input channels")
    return _COLOR_MODES[channels]


def _image_error(path, e):
    """One line for an image that cannot be used."""
    from PIL import UnidentifiedImageError
    what = "not an image file Pillow can read" if isinstance(e, UnidentifiedImageError) \
        else f"{e}"
    return f"{path}: {what}"


def _read_image(path, size, mode, interpolation="nearest"):
    """The tutorial's load_img -> img_to_array of one file, 16-bit images scaled to
    8 bits and huge ones refused from their header (as the web app does)."""
    from .preprocessing.image import img_to_array, load_img
    from .serving import eight_bit_image
    with open(path, "rb") as f:
        data = f.read()
    img = load_img(io.BytesIO(eight_bit_image(data)), target_size=size, color_mode=mode,
                   interpolation=interpolation)
    return img_to_array(img)
