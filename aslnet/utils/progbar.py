"""Keras's progress bar (``keras.utils.Progbar``), in the form tf.keras 2 prints it."""
import math
import os
import sys
import time

import numpy as np

__all__ = ["Progbar"]


class Progbar:
    """Progress bar: ``update(current, values)`` with ``values`` a list of (name, value).

    verbose=1 redraws one line in place (``\\r``) where the output supports it
    (a terminal, Jupyter or PyCharm) and prints a new line per update
    otherwise; verbose=2 prints one line when the target is reached::

        172/172 [==============================] - 5s 29ms/step - loss: 0.4321
        172/172 - 5s - loss: 0.4321 - accuracy: 0.8765 - 5s/epoch - 29ms/step

    Values are averaged over the steps since the start, weighted by step
    count, except ``stateful_metrics``, shown as last given.  target None
    means unknown (the bar shows the count only).
    """

    def __init__(self, target, width=30, verbose=1, interval=0.05, stateful_metrics=None,
                 unit_name="step"):
        self.target = target
        self.width = width
        self.verbose = verbose
        self.interval = interval
        self.unit_name = unit_name
        self.stateful_metrics = set(stateful_metrics or ())
        self._dynamic_display = ((hasattr(sys.stdout, "isatty") and sys.stdout.isatty())
                                 or "ipykernel" in sys.modules
                                 or "PYCHARM_HOSTED" in os.environ)
        self._total_width = 0
        self._seen_so_far = 0
        self._values = {}  # name -> [weighted sum, weight]
        self._values_order = []
        self._start = time.time()
        self._last_update = 0
        self._time_at_epoch_start = self._start
        self._time_at_epoch_end = None
        self._time_after_first_step = None

    def update(self, current, values=None, finalize=None):
        """Show progress ``current`` (steps done) with ``values``; ``finalize`` ends the line
        (default: when ``current`` reaches the target)."""
        if finalize is None:
            finalize = self.target is not None and current >= self.target
        for k, v in values or []:
            if k not in self._values_order:
                self._values_order.append(k)
            if k in self.stateful_metrics:
                self._values[k] = [v, 1]
            else:
                # Weighted by the steps since the last update, at least 1 (a finalizing call
                # may repeat the last step).
                base = max(current - self._seen_so_far, 1)
                total, count = self._values.get(k, [0, 0])
                self._values[k] = [total + v * base, count + base]
        self._seen_so_far = current

        now = time.time()
        info = f" - {now - self._start:.0f}s"
        if current == self.target:
            self._time_at_epoch_end = now
        if self.verbose == 1:
            if now - self._last_update < self.interval and not finalize:
                return
            prev_total_width = self._total_width
            message = "\b" * prev_total_width + "\r" if self._dynamic_display else "\n"
            if self.target is not None:
                numdigits = int(math.log10(self.target)) + 1 if self.target > 0 else 1
                bar = f"{current:{numdigits}d}/{self.target} ["
                prog_width = int(self.width * current / self.target) if self.target else 0
                if prog_width > 0:
                    bar += "=" * (prog_width - 1) + (">" if current < self.target else "=")
                bar += "." * (self.width - prog_width) + "]"
            else:
                bar = f"{current:7d}/Unknown"
            self._total_width = len(bar)
            message += bar

            time_per_unit = self._estimate_step_duration(current, now)
            if self.target is None or finalize:
                info += self._format_time(time_per_unit, self.unit_name)
            else:
                eta = time_per_unit * (self.target - current)
                s = int(eta)
                if eta > 3600:
                    eta_format = f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
                elif eta > 60:
                    eta_format = f"{s // 60}:{s % 60:02d}"
                else:
                    eta_format = f"{s}s"
                info = f" - ETA: {eta_format}"
            info += self._format_values()
            self._total_width += len(info)
            if prev_total_width > self._total_width:
                info += " " * (prev_total_width - self._total_width)
            if finalize:
                info += "\n"
            self._write(message + info)
        elif self.verbose == 2 and finalize:
            numdigits = int(math.log10(self.target)) + 1 if self.target else 1
            info = f"{current:{numdigits}d}/{self.target}" + info
            info += self._format_values()
            if self._time_at_epoch_end:
                time_per_epoch = self._time_at_epoch_end - self._time_at_epoch_start
                self._time_at_epoch_start = now
                self._time_at_epoch_end = None
                info += " -" + self._format_time(time_per_epoch, "epoch")
                info += " -" + self._format_time(time_per_epoch / self.target, self.unit_name)
            self._write(info + "\n")
        self._last_update = now

    def add(self, n, values=None):
        """Advance by ``n`` steps."""
        self.update(self._seen_so_far + n, values)

    def _format_values(self):
        """' - name: average' for each value (4 decimals, scientific below 1e-3)."""
        text = ""
        for k in self._values_order:
            total, count = self._values[k]
            avg = float(np.mean(total / max(1, count)))
            text += f" - {k}: {avg:.4f}" if abs(avg) > 1e-3 else f" - {k}: {avg:.4e}"
        return text

    @staticmethod
    def _format_time(time_per_unit, unit_name):
        if time_per_unit >= 1 or time_per_unit == 0:
            return f" {time_per_unit:.0f}s/{unit_name}"
        if time_per_unit >= 1e-3:
            return f" {time_per_unit * 1e3:.0f}ms/{unit_name}"
        return f" {time_per_unit * 1e6:.0f}us/{unit_name}"

    def _estimate_step_duration(self, current, now):
        """Seconds per step, leaving out the first step (often slower) once there are more."""
        if not current:
            return 0
        if self._time_after_first_step is not None and current > 1:
            time_per_unit = (now - self._time_after_first_step) / (current - 1)
        else:
            time_per_unit = (now - self._start) / current
        if current == 1:
            self._time_after_first_step = now
        return time_per_unit

    @staticmethod
    def _write(message):
        sys.stdout.write(message)
        sys.stdout.flush()
