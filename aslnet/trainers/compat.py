"""tf.keras 1/2's generator methods (``fit_generator`` ...), which older
versions of the tutorial call: deprecated aliases of fit/evaluate/predict,
as in tf.keras."""
import warnings

__all__ = ["Keras2Aliases"]


class Keras2Aliases:
    """Mixed into :class:`aslnet.trainers.Trainer`."""

    def fit_generator(self, generator, steps_per_epoch=None, epochs=1, verbose=1,
                      callbacks=None, validation_data=None, validation_steps=None,
                      validation_freq=1, class_weight=None, max_queue_size=10, workers=1,
                      use_multiprocessing=False, shuffle=True, initial_epoch=0):
        """Deprecated as in tf.keras: ``fit`` takes generators."""
        warnings.warn("`Model.fit_generator` is deprecated: use `Model.fit`, which supports "
                      "generators.", DeprecationWarning, stacklevel=2)
        return self.fit(generator, steps_per_epoch=steps_per_epoch, epochs=epochs,
                        verbose=verbose, callbacks=callbacks, validation_data=validation_data,
                        validation_steps=validation_steps, validation_freq=validation_freq,
                        class_weight=class_weight, shuffle=shuffle,
                        initial_epoch=initial_epoch)

    def evaluate_generator(self, generator, steps=None, callbacks=None, max_queue_size=10,
                           workers=1, use_multiprocessing=False, verbose=0):
        """Deprecated as in tf.keras: ``evaluate`` takes generators."""
        warnings.warn("`Model.evaluate_generator` is deprecated: use `Model.evaluate`, which "
                      "supports generators.", DeprecationWarning, stacklevel=2)
        return self.evaluate(generator, steps=steps, callbacks=callbacks, verbose=verbose)

    def predict_generator(self, generator, steps=None, callbacks=None, max_queue_size=10,
                          workers=1, use_multiprocessing=False, verbose=0):
        """Deprecated as in tf.keras: ``predict`` takes generators."""
        warnings.warn("`Model.predict_generator` is deprecated: use `Model.predict`, which "
                      "supports generators.", DeprecationWarning, stacklevel=2)
        return self.predict(generator, steps=steps, callbacks=callbacks, verbose=verbose)
