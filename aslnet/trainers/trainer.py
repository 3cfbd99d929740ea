"""``Trainer``: compile, fit, evaluate and predict, as Keras's ``Model`` has
them (the model classes inherit it, as in Keras 3).

One training step (``_train_batch``) serves ``train_on_batch`` and ``fit``:
convert the batch, take the frozen trunk's output from the cache or compute
it, run one C ``train_step`` from the trunk boundary.  ``fit``'s loop is
``_epochs``; inference batches go through ``_forward_batches``.
"""
import functools
import warnings
import weakref

import numpy as np

from .. import losses
from .. import metrics as metrics_mod
from .. import optimizers as optimizers_mod
from ..layers import core_shape
from . import data_adapters as data
from . import distributed
from . import quantize as quantize_mod
from . import trunk_cache
from .compat import Keras2Aliases

__all__ = ["Trainer", "serialized"]

_RAN_OUT = ("Your input ran out of data; interrupting training. Make sure that your dataset "
            "or generator can generate at least `steps_per_epoch * epochs` batches.")


def serialized(method):
    """Run ``method`` holding the model's lock: the C network computes one
    call at a time, so calls from several threads (a web server, a predict
    during fit) queue instead of failing."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return wrapper


def _loading_options(max_queue_size, workers, use_multiprocessing):
    """tf.keras's data-loading options: accepted and ignored, said (once per
    call site, Python's default warning filter) when set to other values."""
    if workers != 1 or use_multiprocessing or max_queue_size != 10:
        warnings.warn("workers / use_multiprocessing / max_queue_size are ignored: aslnet "
                      "decodes each image once and overlaps loading with compute itself",
                      UserWarning, stacklevel=3)


def _progbar(steps, verbose, names=()):
    verbose = 1 if verbose == "auto" else int(verbose)
    if verbose not in (1, 2) or not steps:        # 2: one line at the end, as Keras
        return None
    from ..utils.progbar import Progbar
    return Progbar(steps, verbose=verbose, stateful_metrics=list(names))


class Trainer(Keras2Aliases):
    """The training and inference API of a model.  Relies on the model for
    ``_core()`` (its ``CoreNetwork``, built and synced), ``_net`` (the same
    or None), ``_layers``, ``_input``,
    ``_output``, ``_lock`` and ``_dtype_policy``."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "call" in cls.__dict__:         # Keras's model subclassing: refused when made
            def __init__(self, *args, **kw):
                raise NotImplementedError(
                    f"Model subclass {cls.__name__} with call(): aslnet runs a graph of its "
                    "layers in C and cannot run Python code in call(); build the model with "
                    "the functional API (Model(inputs, outputs)) or Sequential (see README's "
                    "Keras API table)")
            cls.__init__ = __init__

    _COMPILE_DEFAULTS = {"loss_weights": None, "weighted_metrics": None,
                         "run_eagerly": (False, None), "steps_per_execution": (1, None),
                         "jit_compile": (False, None, "auto", True),
                         "auto_scale_loss": (True, False, None)}

    # -- compile --------------------------------------------------------------
    @serialized
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, **kwargs):
        """Keras's ``compile``: an optimizer (name or object), the loss
        (``'categorical_crossentropy'`` or ``'sparse_categorical_crossentropy'``)
        and metrics (``['accuracy']``).  Compiling again with the same
        optimizer object keeps its state (moments, iterations); a new one
        starts from zero, as in Keras."""
        for key, value in kwargs.items():
            if key not in self._COMPILE_DEFAULTS:
                raise TypeError(f"compile() got an unexpected keyword argument {key!r}")
            ok = self._COMPILE_DEFAULTS[key]
            if value not in (ok if isinstance(ok, tuple) else (ok,)):
                raise NotImplementedError(f"compile({key}={value!r}) is not supported "
                                          "by aslnet")
        new = optimizers_mod.get(optimizer)
        objective = losses.resolve(loss)
        specs = [metrics] if isinstance(metrics, (str, dict)) or callable(metrics) \
            else list(metrics or [])
        names = [metrics_mod.metric_name(m) for m in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"compile(metrics=...): two metrics named alike in {names}; "
                             "give them distinct name= arguments")
        if self._output is not None:             # check them now; made again per run
            self._new_metrics(objective, specs)
        if new is not self.optimizer:
            self._pending_opt = None         # a copy's restored state was the old one's
        if self._net is not None:
            self._net.set_optimizer(new, reset=new is not self.optimizer)
        self.optimizer, self._objective = new, objective
        self.loss, self.compiled_metrics, self._metric_specs = objective.identifier, names, specs
        new._model_ref = weakref.ref(self)

    @property
    def metrics_names(self):
        """tf.keras's names of evaluate's values: ['loss', *metrics]."""
        return ["loss", *self.compiled_metrics]

    _objective = _metric_specs = None      # set by compile (absent from aslnet 0.1 pickles)

    def _loss_objective(self):
        """The compiled loss as a ``losses.Objective`` (what trains, and how)."""
        if self._objective is None:
            self._objective = losses.resolve(self.loss)
        return self._objective

    def _new_metrics(self, objective=None, specs=None):
        """Fresh metric objects of the compiled metrics (per epoch, evaluate,
        train_on_batch), ``'accuracy'`` resolved for this output and loss."""
        objective = objective or self._loss_objective()
        if specs is None:
            specs = self.compiled_metrics if self._metric_specs is None else self._metric_specs
        classes = self._output.shape[-1]
        out = []
        for spec in specs:
            m = metrics_mod.compile_metric(spec, objective, classes)
            if isinstance(spec, metrics_mod.Metric):     # the user's object: keep it, reset
                m.reset_state()
            out.append(m)
        return out

    def _require_compiled(self):
        if self.loss is None:
            raise RuntimeError("You must compile your model before training/testing. "
                               "Use `model.compile(optimizer, loss)`.")

    def _softmax_output(self):
        """Whether training can fuse the cross-entropy with a softmax output:
        the C core's rule (``Net.softmax_output``), asked, not re-derived."""
        return self._core().net.softmax_output() is not None

    def _require_trainable_output(self):
        """Training runs the cross-entropy fused with a softmax output."""
        quantize_mod.refuse_training(self)
        self._require_compiled()
        shape = self._output.shape[1:]
        if not (len(shape) == 1 or tuple(shape[:2]) == (1, 1)):
            raise ValueError(
                f"aslnet trains classifiers: the output must be (None, classes), got "
                f"{self._output.shape} (add GlobalAveragePooling2D or Flatten before the "
                "Dense)")
        if self._loss_objective().needs_softmax() and not self._softmax_output():
            last = self._layers[-1]
            raise ValueError(
                f"aslnet trains the cross-entropy of probabilities on a softmax output, but "
                f"the output layer '{last.name}' has activation "
                f"{getattr(last, 'activation', None) or 'none'!r}: give it "
                f"activation='softmax', or compile with loss=aslnet.losses."
                f"{'Sparse' if self._loss_objective().sparse else ''}CategoricalCrossentropy("
                "from_logits=True) if it outputs logits")

    # -- batches --------------------------------------------------------------
    def _single_input(self, x):
        """Keras's {input name: array} for a one-input model: the array."""
        if isinstance(x, dict):
            name = self._input._layer.name
            if len(x) != 1 or next(iter(x)) not in (name, self._layers[0].name):
                raise ValueError(f"Model '{self.name}' has one input, '{name}'; got a dict "
                                 f"with keys {sorted(map(str, x))}")
            return next(iter(x.values()))
        return x

    def _to_input(self, x):
        x = np.asarray(self._single_input(x), dtype=np.float32)
        expected = self._input.shape[1:]       # None: any size in that dimension

        def fits(shape):
            return len(shape) == len(expected) and all(
                e is None or d == e for d, e in zip(shape, expected))
        if not fits(x.shape[1:]):
            if fits(x.shape):
                raise ValueError(f"Model '{self.name}' expects a batch of shape "
                                 f"(batch, {', '.join(map(str, expected))}); got one sample "
                                 f"{x.shape} — add a batch axis (x[None]; a tf.data.Dataset: "
                                 ".batch(n))")
            raise ValueError(f"Model '{self.name}' expects input shape "
                             f"(None, {', '.join(map(str, expected))}), got {x.shape}")
        if None in expected:     # the C network says when a size is too small for it
            return np.ascontiguousarray(x)
        return np.ascontiguousarray(x.reshape((x.shape[0],) + core_shape(expected)))

    def _to_target(self, y, n):
        """The batch's labels as dense (n, classes) float32 targets (the loss's rule)."""
        return self._loss_objective().targets(y, n, self._output.shape[-1])

    def _update_metrics(self, metrics, t, out):
        """Update the metric objects with a batch: Keras's y_true (integer
        labels for the sparse loss, else the targets) and the outputs."""
        if metrics:
            y_true = np.argmax(t, axis=-1) if self._loss_objective().sparse else t
            for m in metrics:
                m.update_state(y_true, out)

    @staticmethod
    def _logs(loss_sum, n, metrics=(), replicas=None):
        """The logs of the batches so far; with ``replicas``, of every rank's."""
        if replicas is not None:
            loss_sum, n, metrics = replicas.global_state(loss_sum, n, metrics)
        logs = {"loss": loss_sum / max(n, 1)}
        for m in metrics:
            logs[m.name] = m.result()
        return logs

    def _trunk_start(self):
        return trunk_cache.trunk_start(self._layers[1:], self._net)

    def _trunk_cache(self, x, start):
        return trunk_cache.make_cache(self._net, x, start, self.trunk_cache_bytes,
                                      self.trunk_cache_dir)

    # -- training -------------------------------------------------------------
    def _train_batch(self, network, xb, yb, *, ids=None, cache=None, start=0,
                     sample_weight=None, class_weight=None, metrics=(), replicas=None):
        """The one training step: (summed loss, samples); ``metrics`` are
        updated with the batch.  ``xb`` is None when the batch's trunk
        features are cached.  The loss decides the path (losses.Objective):
        a cross-entropy on the softmax output runs fused in C
        (``train_step``), any other loss computes its value and gradient on
        the outputs in NumPy around the C forward / backward / update.
        ``replicas`` (data-parallel training): this rank takes its slice of
        the global batch and the ranks average their gradients before the
        update."""
        network.net.set_learning_rate(
            self.optimizer._step_learning_rate(network.net.iterations))
        between = None
        # synchronized batch norms sum over the ranks (one process: nothing to sum)
        network.set_allreduce(None if replicas is None else replicas.allreduce)
        if replicas is not None:
            xb = None if xb is None else self._single_input(xb)
            total = len(yb) if xb is None else len(xb)
            xb, yb, ids, sample_weight = replicas.shard(xb, yb, ids, sample_weight, n=total)
            local = len(yb)

            def between(net):
                replicas.average_gradients(net, local, total)
            if local == 0:
                network.empty_step(start, between)
                return 0.0, 0
        xb = None if xb is None else self._to_input(xb)
        n = len(yb) if xb is None else len(xb)
        t = self._to_target(yb, n)
        w = data.sample_weights(t, sample_weight, class_weight)
        feats, s0 = trunk_cache.features(network, xb, ids, cache, start,
                                         self._dtype_policy.compute_dtype)
        obj = self._loss_objective()
        if obj.fused(self._softmax_output()):
            y = obj.smoothed(t).reshape(n, 1, 1, -1)
            loss, pred = network.train_step(feats, y if w is None else y * w, start=s0,
                                            between=between)
            loss = loss * n
        else:
            loss, pred = network.train_step_with(
                feats, lambda out: obj.value_and_grad(t, out, w), start=s0, between=between)
        self._update_metrics(metrics, t, pred.reshape(n, -1))
        return loss, n

    @serialized
    def train_on_batch(self, x, y, sample_weight=None, class_weight=None, return_dict=False):
        """One optimizer step on one batch; the loss (and metrics) of it.  Under
        aslnet.distribution's DataParallel the batch is the global one, as in fit (each
        rank computes its slice; rank 0's weights are not broadcast: fit does that)."""
        self._require_trainable_output()
        network = self._core()
        metrics = self._new_metrics()
        replicas = distributed.replicas()
        loss, n = self._train_batch(network, x, y, start=self._trunk_start(),
                                    sample_weight=sample_weight, class_weight=class_weight,
                                    metrics=metrics, replicas=replicas)
        logs = self._logs(loss, n, metrics, replicas)
        return logs if return_dict else (logs["loss"] if len(logs) == 1 else list(logs.values()))

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None, validation_freq=1, max_queue_size=10, workers=1,
            use_multiprocessing=False):
        """Keras's ``fit``.  Each epoch runs ``steps_per_epoch`` batches (else
        one pass over the data); a following epoch goes on where the last one
        stopped.  Calls from other threads wait until it returns.
        (``max_queue_size``, ``workers``, ``use_multiprocessing``: tf.keras's
        data-loading options, accepted and not needed: aslnet decodes each
        image once per fit and overlaps loading with compute itself.)"""
        _loading_options(max_queue_size, workers, use_multiprocessing)
        with self._lock:
            return self._fit(self._single_input(x), y, batch_size=batch_size, epochs=epochs,
                             verbose=verbose, callbacks=callbacks,
                             validation_split=validation_split,
                             validation_data=validation_data, shuffle=shuffle,
                             class_weight=class_weight, sample_weight=sample_weight,
                             initial_epoch=initial_epoch, steps_per_epoch=steps_per_epoch,
                             validation_steps=validation_steps,
                             validation_batch_size=validation_batch_size,
                             validation_freq=validation_freq)

    def _fit(self, x, y, *, batch_size, epochs, verbose, callbacks, validation_split,
             validation_data, shuffle, class_weight, sample_weight, initial_epoch,
             steps_per_epoch, validation_steps, validation_batch_size, validation_freq):
        from ..callbacks import CallbackList, History
        self._require_trainable_output()
        if class_weight is not None and sample_weight is not None:
            raise ValueError("You cannot pass both class_weight and sample_weight")
        if validation_split and validation_data is None:   # Keras: validation_data wins
            x, y, sample_weight, validation_data = data.split_validation(
                x, y, sample_weight, validation_split)
        if isinstance(validation_freq, bool) or not isinstance(validation_freq, int) \
                or validation_freq < 1:
            raise ValueError(f"validation_freq must be a positive integer, got "
                             f"{validation_freq!r}")
        verbose = 1 if verbose == "auto" else int(verbose)
        steps = data.num_steps(x, batch_size, steps_per_epoch)
        network = self._core()
        replicas = distributed.replicas()
        if replicas is not None:
            replicas.start_fit(self, network, steps, x)
            network = self._core()           # (rank 0's weights: refold)
            if replicas.rank != 0:
                verbose = 0                  # rank 0 prints
        names = data.class_names(x)         # saved with the model, used by serving
        if names is not None and len(names) == self.output_shape[-1]:
            self.class_names = names
        start = self._trunk_start()
        cache, self._val_cache, validation = None, None, None
        try:
            cache = self._trunk_cache(x, start)
            stream = data.DataStream(x, y, batch_size, shuffle, cached=cache,
                                     sample_weight=sample_weight,
                                     part=replicas and replicas.span)  # (decode a slice)
            cbs = CallbackList(callbacks, add_history=True, add_progbar=verbose != 0,
                               model=self, verbose=verbose, epochs=epochs, steps=steps)
            history = next(c for c in cbs if isinstance(c, History))
            if validation_data is not None:
                vx, vy, vw = data.unpack_validation(validation_data)
                self._val_cache = (vx, self._trunk_cache(vx, start))
                validation = dict(x=vx, y=vy, batch_size=validation_batch_size or batch_size,
                                  steps=validation_steps, sample_weight=vw,
                                  freq=validation_freq)
            self._epochs(network, stream, cbs, start=start, cache=cache, epochs=epochs,
                         initial_epoch=initial_epoch, steps_per_epoch=steps_per_epoch,
                         class_weight=class_weight, validation=validation,
                         replicas=replicas)
        finally:                    # also after an exception or Ctrl-C
            for c in (cache, self._val_cache and self._val_cache[1]):
                if c is not None:
                    c.close()
            self._val_cache = None
        self.history = history
        return history

    def _epochs(self, network, stream, cbs, *, start, cache, epochs, initial_epoch,
                steps_per_epoch, class_weight, validation, replicas=None):
        """fit's loop; ``validation``: the evaluate arguments and ``freq``, or None."""
        self.stop_training = False
        cbs.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            cbs.on_epoch_begin(epoch)
            loss_sum, seen, metrics = 0.0, 0, self._new_metrics()
            for step, (xb, yb, ids, sw) in enumerate(stream.epoch(steps_per_epoch)):
                cbs.on_train_batch_begin(step)
                l, n = self._train_batch(network, xb, yb, ids=ids, cache=cache, start=start,
                                         sample_weight=sw, class_weight=class_weight,
                                         metrics=metrics, replicas=replicas)
                loss_sum, seen = loss_sum + l, seen + n
                cbs.on_train_batch_end(step, self._logs(loss_sum, seen, metrics, replicas))
                if self.stop_training:
                    break
            seen_all = seen if replicas is None else replicas.comm.allreduce(seen)
            if seen_all == 0:
                warnings.warn(_RAN_OUT, stacklevel=4)
                break
            logs = self._logs(loss_sum, seen, metrics, replicas)
            if validation and (epoch + 1) % validation["freq"] == 0:
                val = self.evaluate(validation["x"], validation["y"],
                                    batch_size=validation["batch_size"],
                                    steps=validation["steps"], verbose=0, return_dict=True,
                                    callbacks=cbs, sample_weight=validation["sample_weight"])
                logs.update({"val_" + k: v for k, v in val.items()})
            cbs.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
            if steps_per_epoch is not None and seen_all and stream.exhausted:
                warnings.warn(_RAN_OUT, stacklevel=4)
                break
        cbs.on_train_end()

    def fine_tune(self, x, validation_data=None, head_epochs=20, epochs=8,
                  unfreeze_from=None, head_learning_rate=1e-3, learning_rate=2e-5,
                  batch_size=None, verbose="auto", callbacks=None):
        """aslnet's fine-tuning recipe (see :func:`aslnet.recipes.fine_tune`);
        returns the History of phase 2 (phase 1's is ``self.head_history``)."""
        from ..recipes.fine_tune import fine_tune
        return fine_tune(self, x, validation_data=validation_data, head_epochs=head_epochs,
                         epochs=epochs, unfreeze_from=unfreeze_from,
                         head_learning_rate=head_learning_rate, learning_rate=learning_rate,
                         batch_size=batch_size, verbose=verbose, callbacks=callbacks)

    # -- inference ------------------------------------------------------------
    def quantize(self, mode, calibration_data=None, batch_size=None, steps=None):
        """Keras 3's ``model.quantize("int8")``, in place: the convolutions then predict
        in int8 (per-channel int8 weights, per-tensor activation scales calibrated on
        ``calibration_data``, which aslnet requires but for an unchanged ImageNet model of
        aslnet.applications, whose TFLite file's ranges it uses; see
        aslnet.trainers.quantize).  A quantized model does not train; it saves and loads
        quantized."""
        with self._lock:
            quantize_mod.quantize(self, mode, calibration_data, batch_size, steps)

    def _forward_batches(self, x, y, batch_size, steps, with_targets, on_begin,
                         replicas=None):
        """Yields (n, targets, outputs, (lo, hi, size)) per batch: ``on_begin(i)``
        is called before batch i is computed (the callbacks' *_batch_begin).  With
        ``replicas``, of this rank's slice [lo, hi) of each batch of ``size``
        samples; else the whole batch, (0, n, n)."""
        network = self._core()
        dtype = self._dtype_policy.compute_dtype
        cache, start = None, 0
        if self._val_cache is not None and self._val_cache[0] is x:   # validation in fit
            cache, start = self._val_cache[1], self._trunk_start()
        for i, (xb, yb, ids) in enumerate(data.batches(x, y, batch_size, False, steps,
                                                       with_targets=with_targets,
                                                       cached=cache,
                                                       part=replicas and replicas.span)):
            on_begin(i)
            span = None
            if replicas is not None:
                total = len(yb) if xb is None else len(xb)
                xb, yb, ids = replicas.shard(xb, yb, ids, n=total)
                span = replicas.span(total) + (total,)
                if span[0] == span[1]:
                    yield 0, yb, self._shaped(np.zeros(0, np.float32), 0), span
                    continue
            xb = None if xb is None else self._to_input(xb)   # None: cached
            feats, s0 = trunk_cache.features(network, xb, ids, cache, start, dtype)
            out = network.inference_forward(feats, dtype) if s0 == 0 else \
                network.forward(feats, start=s0)
            n = len(feats)
            yield n, yb, self._shaped(out, n), span or (0, n, n)

    @serialized
    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None,
                max_queue_size=10, workers=1, use_multiprocessing=False):
        """The model's outputs for ``x`` (arrays, an image iterator, a
        generator or a dataset), batch by batch (``batch_size`` default 32)."""
        from ..callbacks import CallbackList
        _loading_options(max_queue_size, workers, use_multiprocessing)
        x = self._single_input(x)
        n_steps = data.num_steps(x, batch_size, steps)
        bar = _progbar(n_steps, verbose)
        cbs = CallbackList(callbacks, model=self, verbose=0, epochs=1, steps=n_steps)
        cbs.on_predict_begin()
        outs = []
        for i, (_, _, out, _) in enumerate(self._forward_batches(
                x, None, batch_size, n_steps, False, cbs.on_predict_batch_begin)):
            outs.append(out)
            cbs.on_predict_batch_end(i, {"outputs": out})
            if bar:
                bar.update(i + 1)
        cbs.on_predict_end()
        if not outs:
            return self._shaped(np.zeros(0, np.float32), 0)
        return np.concatenate(outs)

    @serialized
    def predict_on_batch(self, x):
        """The outputs for one batch of inputs, in one call."""
        xb = self._to_input(x)
        network = self._core()
        return self._shaped(network.inference_forward(xb, self._dtype_policy.compute_dtype),
                            len(xb))

    def _shaped(self, out, n):
        """The core's output for n samples in the model's output shape; a size-agnostic
        model's (None spatial dimensions) keeps the core's, planned for this input size."""
        shape = tuple(self._output.shape[1:])
        if None in shape:
            return out.reshape((n,) + tuple(d or 0 for d in shape)) if n == 0 else out
        return out.reshape((n,) + shape)

    @serialized
    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None,
                 steps=None, return_dict=False, callbacks=None, max_queue_size=10, workers=1,
                 use_multiprocessing=False):
        """Keras's ``evaluate``; ``sample_weight`` (arrays only) weights each sample's
        loss as in fit (the accuracy stays unweighted, as Keras's compiled metrics)."""
        from ..callbacks import CallbackList
        _loading_options(max_queue_size, workers, use_multiprocessing)
        self._require_compiled()
        x = self._single_input(x)
        sample_weight = data.evaluation_weights(x, sample_weight)
        n_steps = data.num_steps(x, batch_size, steps)
        replicas = distributed.replicas()
        if replicas is not None and replicas.rank != 0:
            verbose = 0                        # rank 0 prints
        bar = _progbar(n_steps, verbose, ["loss", *self.compiled_metrics])  # running means
        if isinstance(callbacks, CallbackList):     # fit's own list (validation)
            cbs = callbacks
        else:
            cbs = CallbackList(callbacks, model=self, verbose=0, epochs=1, steps=n_steps)
        cbs.on_test_begin()
        loss_sum, seen, offset, metrics = 0.0, 0, 0, self._new_metrics()
        from_softmax = self._softmax_output()
        for i, (n, yb, out, (lo, hi, total)) in enumerate(self._forward_batches(
                x, y, batch_size, n_steps, True, cbs.on_test_batch_begin, replicas)):
            if n:
                t = self._to_target(yb, n)
                p = out.reshape(n, -1)
                per_sample = self._loss_objective().per_sample(t, p, from_softmax)
                if sample_weight is not None:
                    per_sample = per_sample * sample_weight[offset + lo:offset + hi]
                loss_sum += float(np.sum(per_sample))
                self._update_metrics(metrics, t, p)
            seen, offset = seen + n, offset + total
            logs = self._logs(loss_sum, seen, metrics, replicas)
            cbs.on_test_batch_end(i, logs)
            if bar:
                bar.update(i + 1, list(logs.items()))
        logs = self._logs(loss_sum, seen, metrics, replicas)
        cbs.on_test_end(logs)
        if return_dict:
            return logs
        return logs["loss"] if len(logs) == 1 else list(logs.values())

    def test_on_batch(self, x, y, sample_weight=None, return_dict=False):
        """``evaluate`` on one batch."""
        return self.evaluate(x, y, batch_size=len(x), verbose=0, sample_weight=sample_weight,
                             return_dict=return_dict)
