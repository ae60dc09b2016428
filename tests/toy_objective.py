"""A toy objective defined entirely outside the package: the test that a new objective is one file.

`BaselineVAE` has three parameter groups: p and q train on the ELBO (one shared surrogate), and a
baseline network b(x), trained on its own loss (b(x) - stop(ELBO))^2, learns to predict each
example's ELBO, as the input-dependent baseline of NVIL would. A running mean of the ELBO (not
learned by gradient) is updated in `after_step`. Imported by tests/conftest.py, so the shared
harness (tests/test_models.py, tests/test_distribute.py) covers it like any built-in model.
"""
import keras
import tensorflow as tf

from tfdgm import models
from tfdgm.models.base import global_mean


@models.register("toy_baseline_vae")
class BaselineVAE(models.AmortizedModel):
    """ELBO-trained VAE plus a baseline network with a squared-error loss of its own.

    Args:
      running_mean_decay: decay of the running mean of the batch ELBO, updated after each step.
      **kwargs: see `tfdgm.models.AmortizedModel`.
    """

    metric_names = models.AmortizedModel.metric_names + ("baseline_error", "running_elbo")

    def __init__(self, running_mean_decay=0.9, **kwargs):
        super().__init__(**kwargs)
        self.running_mean_decay = float(running_mean_decay)
        self.baseline = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(1)], name="baseline")
        self.baseline.build((None,) + self.example_shape)
        self.running_elbo = self.add_weight(shape=(), initializer="zeros", trainable=False, name="running_elbo",
                                            aggregation="mean")

    def parameter_groups(self):
        return dict(super().parameter_groups(), baseline=list(self.baseline.trainable_variables))

    def surrogates(self, x, samples=None, training=True):
        out = self.log_weights(x, self.num_samples)
        elbo = tf.reduce_mean(out["log_w"], axis=0)
        prediction = tf.squeeze(self.baseline(x), axis=-1)
        baseline_loss = tf.square(prediction - tf.stop_gradient(elbo))
        metrics = self.base_metrics(out, -elbo)
        metrics.update(baseline_error=baseline_loss, running_elbo=tf.fill(tf.shape(elbo), self.running_elbo))
        losses = {"p": -elbo, "q": -elbo, "baseline": baseline_loss}
        return losses, metrics, global_mean(elbo)

    def after_step(self, batch_elbo):
        decay = self.running_mean_decay
        self.running_elbo.assign(decay * self.running_elbo + (1.0 - decay) * batch_elbo)

    def get_config(self):
        return dict(super().get_config(), running_mean_decay=self.running_mean_decay)
