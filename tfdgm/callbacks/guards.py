"""Guards that stop training at the step where it broke: a non-finite loss (NaNGuard) or a loss
that grew by orders of magnitude (DivergenceGuard)."""
import math

import keras

from tfdgm.callbacks.files import _numpy, _step


def _to_float(value):
    try:
        return float(_numpy(value))
    except (TypeError, ValueError):
        return None


class _Guard(keras.callbacks.Callback):
    """Records the first failing batch (`self.failure`: epoch, batch, global step, metrics) and
    stops training there. With steps_per_execution > 1 the batch is the last of its execution."""

    def __init__(self, print_fn=print):
        super().__init__()
        self.failure = None
        self.print_fn = print_fn
        self._epoch = 0

    @property
    def triggered(self):
        return self.failure is not None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def _stop(self, batch, metrics, **extra):
        self.failure = dict({"epoch": self._epoch + 1, "batch": int(batch) + 1, "global_step": _step(self.model),
                             "metrics": metrics}, **extra)
        self.print_fn(f"\n{self.message}")
        self.model.stop_training = True


class NaNGuard(_Guard):
    """Stops training at the first batch whose logged loss or metric is NaN or infinite.

    Unlike keras.callbacks.TerminateOnNaN it checks every metric, records where it happened
    (`self.failure`: epoch, batch, global step, metric names and values) and says so in the
    message.
    """

    def on_train_batch_end(self, batch, logs=None):
        if self.failure is not None or not logs:
            return
        values = {name: _to_float(value) for name, value in logs.items()}
        bad = {name: v for name, v in values.items() if v is not None and not math.isfinite(v)}
        if bad:
            # "loss" first: it is the one whose gradient broke the weights.
            self._stop(batch, {name: bad[name] for name in sorted(bad, key=lambda name: (name != "loss", name))})

    @property
    def message(self):
        if self.failure is None:
            return ""
        f = self.failure
        metrics = ", ".join(f"{k}={v}" for k, v in f["metrics"].items())
        return (f"NaNGuard: non-finite {metrics} at epoch {f['epoch']}, batch {f['batch']} "
                f"(optimizer step {f['global_step']}); training stopped.")


class DivergenceGuard(_Guard):
    """Stops training when the loss exceeds the best loss seen so far by `factor` times its scale:
    loss > best + (factor - 1) * max(|best|, 1), i.e. loss > factor * best for the usual positive
    losses. factor=0 switches it off. Keras logs the epoch's running mean; the loss of the steps
    since the previous log is recovered from it (n * mean_n - m * mean_m over n - m steps), so a
    loss that explodes is caught at once rather than diluted by the epoch's earlier steps.
    """

    def __init__(self, factor=1e3, print_fn=print, reference=None):
        super().__init__(print_fn=print_fn)
        if factor and factor <= 1:
            raise ValueError(f"DivergenceGuard factor must be > 1 (or 0 for off), got {factor}.")
        self.factor = float(factor)
        # The loss before training (e.g. `reference_loss`): with several steps per execution the
        # first logged mean may already include a blow-up in its later steps.
        self.best = None if reference is None or not math.isfinite(reference) else float(reference)
        self._seen = (0, 0.0)  # (batches, their mean loss) of this epoch at the previous log

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        self._seen = (0, 0.0)

    def on_train_batch_end(self, batch, logs=None):
        if self.failure is not None or not self.factor or not logs or "loss" not in logs:
            return
        mean, count = _to_float(logs["loss"]), int(batch) + 1
        if mean is None or not math.isfinite(mean):
            return  # NaNGuard's job
        seen, seen_mean = self._seen
        loss = (count * mean - seen * seen_mean) / (count - seen) if count > seen else mean
        self._seen = (count, mean)
        if self.best is None or loss < self.best:
            self.best = loss
        elif loss > self.best + (self.factor - 1) * max(abs(self.best), 1.0):
            self._stop(batch, {"loss": loss}, best_loss=self.best, factor=self.factor)

    @property
    def message(self):
        if self.failure is None:
            return ""
        f = self.failure
        return (f"DivergenceGuard: loss={f['metrics']['loss']:.4g} at epoch {f['epoch']}, batch {f['batch']} "
                f"(optimizer step {f['global_step']}) is more than {f['factor']:g} times the best loss so far "
                f"({f['best_loss']:.4g}); training stopped. Resume with a smaller "
                f"--config.training.learning_rate, or raise --config.training.divergence_factor (0 = off).")


def reference_loss(model, x):
    """The model's loss on the batch x now, for `DivergenceGuard(reference=...)`, or None if it cannot
    be computed. The seed generator's state is put back, so training draws what it would have."""
    state = model.seed_generator.state.numpy()
    try:
        return _to_float(model.test_on_batch(x, return_dict=True)["loss"])
    except Exception:  # noqa: BLE001  (only a reference: the guard then starts from the first log)
        return None
    finally:
        model.seed_generator.state.assign(state)
