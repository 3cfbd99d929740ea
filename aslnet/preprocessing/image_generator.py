"""Keras's ``ImageDataGenerator``: random augmentation and standardization
of image batches, and the ``flow*`` methods that make its iterators."""
import warnings

import numpy as np

from .affine import _affine_transform, _brightness_shift, _channel_shift
from .iterators import DirectoryIterator, NumpyArrayIterator



class ImageDataGenerator:
    """Keras's ImageDataGenerator: real-time augmentation and standardisation of image batches.

    Images are channels last.  Augmentation per image (``random_transform``):
    rotation_range (degrees), width/height_shift_range (fraction of the size
    if < 1, else pixels; or a list of choices), shear_range (degrees),
    zoom_range (float or [lower, upper]), channel_shift_range,
    horizontal/vertical_flip, brightness_range ([lower, upper] factors);
    fill_mode 'nearest', 'constant' (with cval), 'reflect' or 'wrap';
    interpolation_order 0 or 1.  Then ``standardize``: preprocessing_function,
    rescale, sample- and feature-wise centring and normalisation, ZCA
    whitening (feature-wise statistics come from ``fit``).
    validation_split sets aside that fraction for ``subset='validation'``.

    Kept from Keras for identical results: height_shift_range shifts images
    sideways and width_shift_range up and down (keras-team/keras#17398), and
    all random draws come in Keras's order.
    """

    def __init__(self, featurewise_center=False, samplewise_center=False,
                 featurewise_std_normalization=False, samplewise_std_normalization=False,
                 zca_whitening=False, zca_epsilon=1e-6, rotation_range=0,
                 width_shift_range=0.0, height_shift_range=0.0, brightness_range=None,
                 shear_range=0.0, zoom_range=0.0, channel_shift_range=0.0,
                 fill_mode="nearest", cval=0.0, horizontal_flip=False, vertical_flip=False,
                 rescale=None, preprocessing_function=None, validation_split=0.0,
                 interpolation_order=1, dtype="float32"):
        self.featurewise_center = featurewise_center
        self.samplewise_center = samplewise_center
        self.featurewise_std_normalization = featurewise_std_normalization
        self.samplewise_std_normalization = samplewise_std_normalization
        self.zca_whitening = zca_whitening
        self.zca_epsilon = zca_epsilon
        self.rotation_range = rotation_range
        self.width_shift_range = width_shift_range
        self.height_shift_range = height_shift_range
        self.shear_range = shear_range
        self.channel_shift_range = channel_shift_range
        if fill_mode not in {"constant", "nearest", "reflect", "wrap"}:
            raise ValueError(f"Invalid fill_mode: {fill_mode}")
        self.fill_mode = fill_mode
        self.cval = cval
        self.horizontal_flip = horizontal_flip
        self.vertical_flip = vertical_flip
        self.rescale = rescale
        self.preprocessing_function = preprocessing_function
        if interpolation_order not in (0, 1):
            raise ValueError(f"interpolation_order must be 0 or 1, got {interpolation_order}")
        self.interpolation_order = interpolation_order
        self.dtype = dtype
        if validation_split and not 0 < validation_split < 1:
            raise ValueError("`validation_split` must be strictly between 0 and 1. "
                             f" Received: {validation_split}")
        self._validation_split = validation_split
        self.mean = None
        self.std = None
        self.principal_components = None

        if isinstance(zoom_range, (float, int)):
            self.zoom_range = [1 - zoom_range, 1 + zoom_range]
        elif len(zoom_range) == 2 and all(isinstance(v, (float, int)) for v in zoom_range):
            self.zoom_range = [zoom_range[0], zoom_range[1]]
        else:
            raise ValueError("`zoom_range` should be a float or a tuple or list of two floats. "
                             f"Received: {zoom_range}")
        if zca_whitening and not featurewise_center:
            self.featurewise_center = True
            warnings.warn("This ImageDataGenerator specifies `zca_whitening`, which overrides "
                          "setting of `featurewise_center`.")
        if featurewise_std_normalization and not featurewise_center:
            self.featurewise_center = True
            warnings.warn("This ImageDataGenerator specifies `featurewise_std_normalization`, "
                          "which overrides setting of `featurewise_center`.")
        if samplewise_std_normalization and not samplewise_center:
            self.samplewise_center = True
            warnings.warn("This ImageDataGenerator specifies `samplewise_std_normalization`, "
                          "which overrides setting of `samplewise_center`.")
        if brightness_range is not None and (
                not isinstance(brightness_range, (tuple, list)) or len(brightness_range) != 2):
            raise ValueError("`brightness_range should be tuple or list of two floats. "
                             f"Received: {brightness_range}")
        self.brightness_range = brightness_range

    def flow(self, x, y=None, batch_size=32, shuffle=True, sample_weight=None, seed=None,
             save_to_dir=None, save_prefix="", save_format="png", ignore_class_split=False,
             subset=None):
        """Batches of augmented data from arrays: x (N, H, W, C) and optional labels y."""
        return NumpyArrayIterator(
            x, y, self, batch_size=batch_size, shuffle=shuffle, sample_weight=sample_weight,
            seed=seed, save_to_dir=save_to_dir, save_prefix=save_prefix,
            save_format=save_format, ignore_class_split=ignore_class_split, subset=subset)

    def flow_from_directory(self, directory, target_size=(256, 256), color_mode="rgb",
                            classes=None, class_mode="categorical", batch_size=32, shuffle=True,
                            seed=None, save_to_dir=None, save_prefix="", save_format="png",
                            follow_links=False, subset=None, interpolation="nearest",
                            keep_aspect_ratio=False, cache=True):
        """Batches of augmented images from ``directory``, one subfolder per class.

        See ``DirectoryIterator``.
        """
        return DirectoryIterator(
            directory, self, target_size=target_size, color_mode=color_mode, classes=classes,
            class_mode=class_mode, batch_size=batch_size, shuffle=shuffle, seed=seed,
            save_to_dir=save_to_dir, save_prefix=save_prefix, save_format=save_format,
            follow_links=follow_links, subset=subset, interpolation=interpolation,
            keep_aspect_ratio=keep_aspect_ratio, cache=cache)

    def standardize(self, x):
        """Apply preprocessing_function, rescale and the normalisations to one image.

        Like Keras, works in place where it can: pass a copy to keep ``x``.
        """
        if self.preprocessing_function:
            x = self.preprocessing_function(x)
        if self.rescale:
            x *= self.rescale
        if self.samplewise_center:
            x -= np.mean(x, keepdims=True)
        if self.samplewise_std_normalization:
            x /= np.std(x, keepdims=True) + 1e-6
        if self.featurewise_center:
            if self.mean is not None:
                x -= self.mean
            else:
                warnings.warn("This ImageDataGenerator specifies `featurewise_center`, but it "
                              "hasn't been fit on any training data. Fit it first by calling "
                              "`.fit(numpy_data)`.")
        if self.featurewise_std_normalization:
            if self.std is not None:
                x /= self.std + 1e-6
            else:
                warnings.warn("This ImageDataGenerator specifies "
                              "`featurewise_std_normalization`, but it hasn't been fit on any "
                              "training data. Fit it first by calling `.fit(numpy_data)`.")
        if self.zca_whitening:
            if self.principal_components is not None:
                flat_x = np.reshape(x, (-1, np.prod(x.shape[-3:])))
                x = np.reshape(np.dot(flat_x, self.principal_components), x.shape)
            else:
                warnings.warn("This ImageDataGenerator specifies `zca_whitening`, but it hasn't "
                              "been fit on any training data. Fit it first by calling "
                              "`.fit(numpy_data)`.")
        return x

    def get_random_transform(self, img_shape, seed=None):
        """Random augmentation parameters for an image of shape (H, W, C)."""
        rng = np.random if seed is None else np.random.RandomState(seed)
        return self._random_transform_params(img_shape, rng)

    def _random_transform_params(self, img_shape, rng):
        """Draw the parameters from ``rng`` in Keras's order, so seeded runs match Keras's."""
        theta = rng.uniform(-self.rotation_range, self.rotation_range) if self.rotation_range else 0
        tx = _random_shift(self.height_shift_range, img_shape[0], rng)
        ty = _random_shift(self.width_shift_range, img_shape[1], rng)
        shear = rng.uniform(-self.shear_range, self.shear_range) if self.shear_range else 0
        if self.zoom_range[0] == 1 and self.zoom_range[1] == 1:
            zx, zy = 1, 1
        else:
            zx, zy = rng.uniform(self.zoom_range[0], self.zoom_range[1], 2)
        flip_horizontal = (rng.random() < 0.5) * self.horizontal_flip
        flip_vertical = (rng.random() < 0.5) * self.vertical_flip
        channel_shift_intensity = None
        if self.channel_shift_range != 0:
            channel_shift_intensity = rng.uniform(-self.channel_shift_range,
                                                  self.channel_shift_range)
        brightness = None
        if self.brightness_range is not None:
            brightness = rng.uniform(self.brightness_range[0], self.brightness_range[1])
        return {"theta": theta, "tx": tx, "ty": ty, "shear": shear, "zx": zx, "zy": zy,
                "flip_horizontal": flip_horizontal, "flip_vertical": flip_vertical,
                "channel_shift_intensity": channel_shift_intensity, "brightness": brightness}

    def apply_transform(self, x, transform_parameters):
        """Apply augmentation parameters (as from ``get_random_transform``) to one image."""
        p = transform_parameters
        x = _affine_transform(x, p.get("theta", 0), p.get("tx", 0), p.get("ty", 0),
                              p.get("shear", 0), p.get("zx", 1), p.get("zy", 1),
                              fill_mode=self.fill_mode, cval=self.cval,
                              order=self.interpolation_order)
        if p.get("channel_shift_intensity") is not None:
            x = _channel_shift(x, p["channel_shift_intensity"])
        if p.get("flip_horizontal", False):
            x = x[:, ::-1]
        if p.get("flip_vertical", False):
            x = x[::-1]
        if p.get("brightness") is not None:
            x = _brightness_shift(x, p["brightness"])
        return x

    def random_transform(self, x, seed=None):
        """A randomly augmented copy of one image (H, W, C)."""
        return self.apply_transform(x, self.get_random_transform(x.shape, seed))

    def fit(self, x, augment=False, rounds=1, seed=None):
        """Compute the feature-wise statistics (mean, std, ZCA) from images x (N, H, W, C)."""
        x = np.array(x, dtype=self.dtype)
        if x.ndim != 4:
            raise ValueError(f"Input to `.fit()` should have rank 4. Got array with shape: "
                             f"{x.shape}")
        rng = np.random if seed is None else np.random.RandomState(seed)
        if self.rescale:
            x *= self.rescale
        if augment:
            x = np.stack([self.apply_transform(img, self._random_transform_params(img.shape, rng))
                          for _ in range(rounds) for img in x]).astype(self.dtype, copy=False)
        if self.featurewise_center:
            self.mean = np.mean(x, axis=(0, 1, 2)).reshape(1, 1, -1)
            x -= self.mean
        if self.featurewise_std_normalization:
            self.std = np.std(x, axis=(0, 1, 2)).reshape(1, 1, -1)
            x /= self.std + 1e-6
        if self.zca_whitening:
            n = len(x)
            u, s, _ = np.linalg.svd(x.reshape(n, -1).T, full_matrices=False)
            s_inv = np.sqrt(n) / (s + self.zca_epsilon)
            self.principal_components = (u * s_inv).dot(u.T)


def _random_shift(shift_range, size, rng):
    """Keras's shift draw: a float range is uniform, an int or list is a choice of pixels."""
    if not shift_range:
        return 0
    try:  # 1-D array-like or int
        shift = rng.choice(shift_range)
        shift *= rng.choice([-1, 1])
    except ValueError:  # floating point
        shift = rng.uniform(-shift_range, shift_range)
    if np.max(shift_range) < 1:
        shift *= size
    return shift
