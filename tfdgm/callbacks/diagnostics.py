"""Posterior-collapse diagnostics as a callback."""
import numpy as np
import keras

from tfdgm.callbacks.files import all_finite

class LatentDiagnostics(keras.callbacks.Callback):
    """Posterior-collapse diagnostics on a fixed batch of held-out data every n epochs.

    Computes `tfdgm.evaluation.diagnostics.latent_diagnostics` on the first num_examples of data
    and adds its scalars to the epoch's logs as `{prefix}{name}` (e.g. latent_active_units,
    latent_mutual_information, latent_kl), so History, CSVLogger and TensorBoard record them
    when they come after this callback in the list. The prefix keeps them apart from the
    training metric "kl" and Keras's "val_" metrics. Epochs that are skipped (not a multiple of
    every_n_epochs, or non-finite weights) add no entries rather than NaNs, which would make
    TrainingCheckpoint refuse to save. `self.results` keeps every full result as (epoch, dict).

    When the number of active units drops to 0 it warns through print_fn: every latent
    dimension's posterior mean has stopped moving with x (posterior collapse).
    """

    LOGGED = ("active_units", "kl", "mutual_information", "kl_aggregate_posterior_to_prior",
              "model_mutual_information_lower_bound")

    def __init__(self, data, every_n_epochs=1, num_examples=1000, prefix="latent_", print_fn=print,
                 **diagnostics_kwargs):
        super().__init__()
        self.data = np.asarray(data[:num_examples], np.float32)
        if len(self.data) == 0:
            raise ValueError("LatentDiagnostics got no held-out examples: pass a non-empty data array.")
        self.every_n_epochs = int(every_n_epochs)
        self.prefix = prefix
        self.print_fn = print_fn
        self.diagnostics_kwargs = diagnostics_kwargs
        self.results = []
        self._collapsed = False

    def on_epoch_end(self, epoch, logs=None):
        if self.every_n_epochs <= 0 or (epoch + 1) % self.every_n_epochs or not all_finite(self.model):
            return
        # Imported here: the callbacks module stays importable without the evaluation package.
        from tfdgm.evaluation.diagnostics import latent_diagnostics

        result = latent_diagnostics(self.model, self.data, **self.diagnostics_kwargs)
        self.results.append((epoch + 1, result))
        if logs is not None:
            logs.update({self.prefix + name: float(result[name]) for name in self.LOGGED if name in result})
        collapsed = result["active_units"] == 0
        if collapsed and not self._collapsed:
            self.print_fn(
                f"\nLatentDiagnostics: epoch {epoch + 1}: 0 of {len(result['activity_per_dim'])} latent units are "
                f"active (KL {result['kl']:.4g} nats, I_q(x;z) {result['mutual_information']:.4g} nats): the "
                "posterior has collapsed onto the prior."
            )
        self._collapsed = collapsed


class GradientVariance(keras.callbacks.Callback):
    """The training gradient's variance and SNR per parameter group, every n epochs.

    Runs `tfdgm.evaluation.gradient_variance` on a fixed batch (the first num_examples of data)
    with `num_draws` noise draws and adds `{prefix}{group}_{statistic}` to the epoch's logs, e.g.
    gradvar_q_snr_median, gradvar_q_variance, gradvar_p_mean_norm (so History, CSVLogger and
    TensorBoard record them when they come after this callback). The draws use their own fixed
    seed and restore the model's seed generator, so training is the same with or without this
    callback. Skipped epochs (and epochs with non-finite weights) add no entries.
    `self.results` keeps (epoch, full result) pairs.
    """

    def __init__(self, data, every_n_epochs=1, num_examples=100, num_draws=20, groups=None, seed=0,
                 prefix="gradvar_", statistics=("mean_norm", "variance", "snr_mean", "snr_median", "norm_snr")):
        super().__init__()
        self.data = np.asarray(data[:num_examples], np.float32)
        if len(self.data) == 0:
            raise ValueError("GradientVariance got no examples: pass a non-empty data array.")
        self.every_n_epochs = int(every_n_epochs)
        self.num_draws = int(num_draws)
        self.groups = groups
        self.seed = seed
        self.prefix = prefix
        self.statistics = tuple(statistics)
        self.results = []

    def on_epoch_end(self, epoch, logs=None):
        if self.every_n_epochs <= 0 or (epoch + 1) % self.every_n_epochs or not all_finite(self.model):
            return
        from tfdgm.evaluation.gradient_variance import gradient_variance

        result = gradient_variance(self.model, self.data, num_draws=self.num_draws, seed=self.seed, groups=self.groups)
        self.results.append((epoch + 1, result))
        if logs is not None:
            logs.update({f"{self.prefix}{group}_{name}": float(stats[name])
                         for group, stats in result.items() for name in self.statistics})
