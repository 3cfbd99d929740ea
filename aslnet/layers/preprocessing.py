"""Preprocessing layers, computed in C: Rescaling (csrc/rescaling.c),
Resizing and CenterCrop (csrc/resizing.c), and the random augmentation
layers tutorials put in front of a base model, RandomFlip, RandomRotation,
RandomZoom, RandomTranslation, RandomContrast (csrc/augment.c).

Keras 3's arguments and rules.  The random layers act only in training
(``fit``); ``predict`` / ``evaluate`` pass images through unchanged.  Each
draws from its own C generator, seeded by ``seed=`` or else from
``aslnet.utils.set_random_seed``'s generator when the layer is made.  They
have no gradient: put them in front of the layers that train.  The
frozen-trunk cache of ``fit`` is off while one of them is active below the
first trainable layer (``_augments``): augmented outputs are never cached.
"""
from .. import backend
from .layer import Layer, _core_output_shape

_FILL_MODES = ("reflect", "wrap", "constant", "nearest")
_INTERPOLATIONS = ("bilinear", "nearest")


def _shape3(layer, s):
    if len(s) != 3:
        raise ValueError(f"Layer '{layer.name}' expects (h, w, c) images, got {s}")


def _seed(seed):
    return int(backend.rng().integers(2 ** 63)) if seed is None else int(seed)


def _choice(layer, what, value, allowed):
    if value not in allowed:
        raise ValueError(f"Layer '{layer.name}': {what} must be one of {allowed}, got {value!r}")
    return value


def _range(layer, what, factor, bounds, symmetric=True):
    """Keras 3's factor rule: a number f gives (-f, f) (or (f, f) when not
    symmetric, as RandomContrast's lower/upper); a pair gives (lower, upper),
    sorted; every value in ``bounds`` (lo exclusive when bounds[2])."""
    lo_b, hi_b, lo_open = bounds
    if isinstance(factor, (list, tuple)):
        if len(factor) != 2:
            raise ValueError(f"Layer '{layer.name}': {what} must be a number or a pair "
                             f"(lower, upper), got {factor!r}")
        pair = sorted(float(v) for v in factor)
    elif isinstance(factor, (int, float)):
        f = abs(float(factor))
        pair = [-f, f] if symmetric else [f, f]
    else:
        raise ValueError(f"Layer '{layer.name}': {what} must be a number or a pair "
                         f"(lower, upper), got {factor!r}")
    for v in pair:
        if v > hi_b or v < lo_b or (lo_open and v == lo_b):
            raise ValueError(f"Layer '{layer.name}': {what}={factor!r} out of range: values "
                             f"must lie in {'(' if lo_open else '['}{lo_b}, {hi_b}]")
    return tuple(pair)


class Rescaling(Layer):
    """y = x * scale + offset (Keras Rescaling, scalar scale and offset)."""

    _base_name = "rescaling"

    def __init__(self, scale, offset=0.0, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        try:
            self.scale, self.offset = float(scale), float(offset)
        except (TypeError, ValueError):
            raise NotImplementedError(f"Layer '{self.name}': Rescaling takes a number for "
                                      f"scale and offset (per-channel values are not "
                                      f"supported), got {scale!r}, {offset!r}") from None

    def compute_output_shape(self, s):
        return tuple(s)                 # any shape (element-wise)

    def _core_ops(self):
        return [("rescaling", dict(scale=self.scale, offset=self.offset))]

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}


class Resizing(Layer):
    """Keras Resizing (tf.image.resize, no antialiasing): 'bilinear' or
    'nearest', optionally cropping the centre to the target's aspect ratio
    first.  No gradient."""

    _base_name = "resizing"

    def __init__(self, height, width, interpolation="bilinear", crop_to_aspect_ratio=False,
                 pad_to_aspect_ratio=False, name=None, **kwargs):
        for key, ok in (("antialias", False), ("fill_mode", "constant")):
            if kwargs.pop(key, ok) != ok:
                raise NotImplementedError(f"Resizing: {key} other than {ok!r} is not "
                                          "supported by aslnet")
        kwargs.pop("fill_value", None)
        super().__init__(name=name, **kwargs)
        if pad_to_aspect_ratio:
            raise NotImplementedError(f"Layer '{self.name}': pad_to_aspect_ratio is not "
                                      "supported by aslnet (crop_to_aspect_ratio is)")
        self.height, self.width = int(height), int(width)
        if self.height < 1 or self.width < 1:
            raise ValueError(f"Layer '{self.name}': height and width must be >= 1")
        self.interpolation = _choice(self, "interpolation", interpolation, _INTERPOLATIONS)
        self.crop_to_aspect_ratio = bool(crop_to_aspect_ratio)

    def compute_output_shape(self, s):
        _shape3(self, s)
        return _core_output_shape(self, s)

    def _core_ops(self):
        return [("resizing", dict(height=self.height, width=self.width,
                                  interpolation=self.interpolation,
                                  crop_to_aspect_ratio=int(self.crop_to_aspect_ratio)))]

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width,
                "interpolation": self.interpolation,
                "crop_to_aspect_ratio": self.crop_to_aspect_ratio}


class CenterCrop(Layer):
    """Keras 3 CenterCrop: the centre height x width; a smaller input is
    resized (bilinear, cropped to the aspect ratio) as Keras does."""

    _base_name = "center_crop"

    def __init__(self, height, width, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.height, self.width = int(height), int(width)
        if self.height < 1 or self.width < 1:
            raise ValueError(f"Layer '{self.name}': height and width must be >= 1")

    def compute_output_shape(self, s):
        _shape3(self, s)
        return _core_output_shape(self, s)

    def _core_ops(self):
        return [("center_crop", dict(height=self.height, width=self.width))]

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width}


class _RandomLayer(Layer):
    """A random augmentation layer: identity outside training, seeded."""

    _training_dependent = True
    _augments = True           # trainers/trunk_cache.py: never cache past it

    def __init__(self, seed=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self._seed_arg = seed
        self.seed = _seed(seed)

    def compute_output_shape(self, s):
        _shape3(self, s)
        return tuple(s)

    def get_config(self):
        return {**super().get_config(), "seed": self._seed_arg}


class _RandomAffine(_RandomLayer):
    def __init__(self, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, name=None, **kwargs):
        super().__init__(seed=seed, name=name, **kwargs)
        self.fill_mode = _choice(self, "fill_mode", fill_mode, _FILL_MODES)
        self.interpolation = _choice(self, "interpolation", interpolation, _INTERPOLATIONS)
        self.fill_value = float(fill_value)

    def _affine(self):
        return {}

    def _core_ops(self):
        return [("random_affine", dict(fill_mode=self.fill_mode,
                                       interpolation=self.interpolation,
                                       fill_value=self.fill_value, seed=self.seed,
                                       **self._affine()))]

    def get_config(self):
        return {**super().get_config(), "fill_mode": self.fill_mode,
                "interpolation": self.interpolation, "fill_value": self.fill_value}


class RandomFlip(_RandomLayer):
    """Keras 3 RandomFlip: each image flipped with probability 1/2
    ('horizontal_and_vertical': one draw flips both axes)."""

    _base_name = "random_flip"

    def __init__(self, mode="horizontal_and_vertical", seed=None, name=None, **kwargs):
        super().__init__(seed=seed, name=name, **kwargs)
        self.mode = _choice(self, "mode", mode,
                            ("horizontal", "vertical", "horizontal_and_vertical"))

    def _core_ops(self):
        return [("random_flip", dict(mode=self.mode, seed=self.seed))]

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


class RandomRotation(_RandomAffine):
    """Keras 3 RandomRotation: angle uniform in factor * 2 pi (a number f:
    [-f, f]; positive: counter-clockwise), about the image centre."""

    _base_name = "random_rotation"

    def __init__(self, factor, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, name=None, **kwargs):
        super().__init__(fill_mode, interpolation, seed, fill_value, name=name, **kwargs)
        self.factor = factor
        self._rotation = _range(self, "factor", factor, (-1.0, 1.0, False))

    def _affine(self):
        return dict(rotation=self._rotation)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


class RandomZoom(_RandomAffine):
    """Keras 3 RandomZoom: zoom 1 + uniform(height_factor) (positive: zoom
    out); width_factor None keeps the aspect ratio."""

    _base_name = "random_zoom"

    def __init__(self, height_factor, width_factor=None, fill_mode="reflect",
                 interpolation="bilinear", seed=None, fill_value=0.0, name=None, **kwargs):
        super().__init__(fill_mode, interpolation, seed, fill_value, name=name, **kwargs)
        self.height_factor, self.width_factor = height_factor, width_factor
        self._h = _range(self, "height_factor", height_factor, (-1.0, 1.0, True))
        self._w = None if width_factor is None else _range(self, "width_factor", width_factor,
                                                           (-1.0, 1.0, True))

    def _affine(self):
        return dict(zoom_height=self._h, zoom_width=self._w)

    def get_config(self):
        return {**super().get_config(), "height_factor": self.height_factor,
                "width_factor": self.width_factor}


class RandomTranslation(_RandomAffine):
    """Keras 3 RandomTranslation: shifts of uniform(factor) * size pixels."""

    _base_name = "random_translation"

    def __init__(self, height_factor, width_factor, fill_mode="reflect",
                 interpolation="bilinear", seed=None, fill_value=0.0, name=None, **kwargs):
        super().__init__(fill_mode, interpolation, seed, fill_value, name=name, **kwargs)
        self.height_factor, self.width_factor = height_factor, width_factor
        self._h = _range(self, "height_factor", height_factor, (-1.0, 1.0, False))
        self._w = _range(self, "width_factor", width_factor, (-1.0, 1.0, False))

    def _affine(self):
        return dict(shift_height=self._h, shift_width=self._w)

    def get_config(self):
        return {**super().get_config(), "height_factor": self.height_factor,
                "width_factor": self.width_factor}


class RandomContrast(_RandomLayer):
    """Keras 3 RandomContrast: per image a factor uniform in
    [1 - lower, 1 + upper] (a number f: lower = upper = f, in [0, 1]); per
    channel, y = (x - mean) * factor + mean, clipped to value_range."""

    _base_name = "random_contrast"

    def __init__(self, factor, value_range=(0, 255), seed=None, name=None, **kwargs):
        super().__init__(seed=seed, name=name, **kwargs)
        self.factor = factor
        # Keras 3's documented rule (a number: lower = upper = factor; Keras
        # 3.15's code draws from [1, 1 + factor] for a number, unlike its docs
        # and tf.keras 2)
        self._factor = _range(self, "factor", factor, (0.0, 1.0, False), symmetric=False)
        lo, hi = (float(v) for v in value_range)
        if not lo <= hi:
            raise ValueError(f"Layer '{self.name}': value_range must be (low, high)")
        self.value_range = (lo, hi)

    def _core_ops(self):
        return [("random_contrast", dict(contrast=self._factor, value_range=self.value_range,
                                         seed=self.seed))]

    def get_config(self):
        return {**super().get_config(), "factor": self.factor,
                "value_range": self.value_range}
