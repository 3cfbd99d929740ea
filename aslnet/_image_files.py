"""Reading image files as ``aslnet predict`` does (and the web app reads
uploads): shared by the CLI and aslnet.batch."""


def _color_mode(model):
    """The color_mode that feeds ``model`` (as the web app chooses it)."""
    from .serving.images import COLOR_MODES
    channels = model.input_shape[-1]
    if channels not in COLOR_MODES:
        raise ValueError(f"can't feed images to a model with {channels} input channels")
    return COLOR_MODES[channels]


def _image_error(path, e):
    """One line for an image that cannot be used."""
    from PIL import UnidentifiedImageError
    what = "not an image file Pillow can read" if isinstance(e, UnidentifiedImageError) \
        else f"{e}"
    return f"{path}: {what}"


def _read_image(path, size, mode, interpolation="nearest"):
    """The tutorial's load_img -> img_to_array of one file, as the web app reads
    uploads: photo formats only, EXIF orientation applied, 16-bit images scaled
    to 8 bits, huge ones refused from their header (aslnet.serving.images)."""
    from .serving.images import decode_image
    with open(path, "rb") as f:
        data = f.read()
    return decode_image(data, size, mode, interpolation=interpolation)
