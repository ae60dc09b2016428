"""The generic base: parameter groups and their optimizers, seeds, swapping components."""
import random

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdgm import models
from tests.harness import TINY, binary_images, tiny_model, unordered_variable_accesses
from tests.toy_objective import BaselineVAE


class ForgetfulBaselineVAE(BaselineVAE):
    """Leaves the baseline network out of every group: its weights would silently never train."""

    def parameter_groups(self):
        return models.AmortizedModel.parameter_groups(self)


def test_a_variable_in_no_group_is_an_error_at_compile():
    model = ForgetfulBaselineVAE(**TINY)
    with pytest.raises(ValueError, match=r"no parameter group.*baseline.*dense.*kernel"):
        model.compile(optimizer="adam")


def test_optimizers_for_unknown_groups_are_refused():
    with pytest.raises(ValueError, match=r"unknown parameter groups \['encoder'\].*\['p', 'q'\]"):
        tiny_model("vae").compile(optimizer="adam", optimizers={"encoder": "sgd"})


def test_each_group_has_its_own_optimizer_and_all_come_back_from_a_keras_file(tmp_path):
    model = tiny_model("toy_baseline_vae")
    model.compile(optimizer=keras.optimizers.Adam(1e-2), optimizers={"q": keras.optimizers.SGD(0.0)})
    groups = model.optimizers_by_group
    assert sorted(groups) == ["baseline", "p", "q"]
    # p and baseline share the default optimizer (as one Keras optimizer over their variables); q has its own.
    assert groups["p"] is groups["baseline"] is model.optimizer and isinstance(groups["q"], keras.optimizers.SGD)
    encoder, decoder, baseline = (m.get_weights() for m in (model.encoder, model.decoder, model.baseline))
    x = binary_images(16)
    model.fit(x, batch_size=8, epochs=1, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(encoder, model.encoder.get_weights()))  # lr 0
    assert not any(np.array_equal(a, b) for a, b in zip(decoder, model.decoder.get_weights()))
    assert not any(np.array_equal(a, b) for a, b in zip(baseline, model.baseline.get_weights()))
    assert [int(o.iterations) for o in model.optimizers_by_group.values()] == [2, 2, 2]
    assert int(model.step_counter) == 2
    # after_step ran: the running ELBO moved from 0 toward the batch ELBOs.
    assert float(model.running_elbo) < 0

    path = str(tmp_path / "toy.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert type(loaded) is BaselineVAE and int(loaded.step_counter) == 2
    restored_groups = loaded.optimizers_by_group
    assert isinstance(restored_groups["q"], keras.optimizers.SGD) and restored_groups["p"] is restored_groups["baseline"]
    for group, optimizer in model.optimizers_by_group.items():
        restored = loaded.optimizers_by_group[group]
        assert len(restored.variables) == len(optimizer.variables) > 1
        for a, b in zip(restored.variables, optimizer.variables):
            np.testing.assert_array_equal(a, b, err_msg=f"{group}: {a.path}")


def test_the_seed_fixes_the_initial_weights_without_touching_global_state():
    state = random.getstate()
    first = models.IWAE(seed=3, **{k: v for k, v in TINY.items() if k != "seed"})
    assert random.getstate() == state
    second = models.IWAE(seed=3, **{k: v for k, v in TINY.items() if k != "seed"})
    other = models.IWAE(seed=4, **{k: v for k, v in TINY.items() if k != "seed"})
    for a, b, c in zip(first.get_weights(), second.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(a, b)
        assert a.std() == 0 or not np.array_equal(a, c)


def test_swapping_the_encoder_drops_the_old_networks_variables():
    model = tiny_model("iwae")
    old = {v.path for v in model.encoder.trainable_variables}
    encoder = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(2 * model.latent_dim)], name="my_encoder")
    encoder.build((None,) + model.example_shape)
    model.encoder = encoder
    paths = {v.path for v in model.trainable_variables}
    assert not old & paths and {v.path for v in encoder.trainable_variables} <= paths
    model.compile(optimizer="adam")
    before = encoder.get_weights()
    model.fit(binary_images(16), batch_size=8, epochs=1, verbose=0)
    assert not any(np.array_equal(a, b) for a, b in zip(before, encoder.get_weights()))


def test_schedules_count_training_steps_on_the_model():
    model = tiny_model("vae", kl_warmup_steps=4)
    model.compile(optimizer=keras.optimizers.SGD(0.0), steps_per_execution=1)
    model.fit(binary_images(16), batch_size=8, epochs=1, verbose=0)
    assert int(model.step_counter) == 2
    np.testing.assert_allclose(float(model.kl_weight()), 0.5)


def test_a_model_without_an_encoder_is_expressible():
    """The generic base carries no encoder assumption: a fully visible model (independent
    Bernoulli pixels) trains on its exact log-likelihood, with one "all" group."""

    class Pixels(models.GenerativeModel):
        metric_names = ("loss",)

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.logits = self.add_weight(shape=self.example_shape, initializer="zeros", name="logits")

        def surrogates(self, x, samples=None, training=True):
            log_px = -tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(
                labels=x, logits=tf.broadcast_to(self.logits, tf.shape(x))), axis=[1, 2, 3])
            return {"all": -log_px}, {"loss": -log_px}, None

    model = Pixels(input_shape=(8, 8, 1), seed=0)
    assert not (model.has_encoder or model.has_bound or model.has_joint)
    model.compile(optimizer=keras.optimizers.Adam(0.1))
    x = binary_images(64)
    model.fit(x, batch_size=16, epochs=30, verbose=0)
    # The maximum-likelihood fit is the per-pixel mean.
    mean = np.clip(x.mean(axis=0), 1e-3, 1 - 1e-3)
    np.testing.assert_allclose(tf.sigmoid(model.logits), mean, atol=0.05)


class MixturePrior(keras.layers.Layer):
    """A two-component Gaussian mixture prior: TFP has no analytic KL from a Gaussian to it."""

    def __init__(self, latent_dim, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = latent_dim

    def distribution(self):
        import tensorflow_probability as tfp

        tfd = tfp.distributions
        locs = tf.stack([-tf.ones([self.latent_dim]), tf.ones([self.latent_dim])])
        components = tfd.Independent(tfd.Normal(locs, 0.5 * tf.ones_like(locs)), reinterpreted_batch_ndims=1)
        return tfd.MixtureSameFamily(tfd.Categorical(logits=tf.zeros([2])), components)


def test_the_kl_is_monte_carlo_where_tfp_has_no_analytic_form():
    model = tiny_model("vae", prior=MixturePrior(3), num_samples=4000)
    x = tf.constant(binary_images(4))
    out = model.log_weights(x, 4000, seed=[1, 2])
    kl = model.kl_divergence(out["posterior"], out)
    np.testing.assert_allclose(kl, tf.reduce_mean(out["log_qz"] - out["log_pz"], axis=0), rtol=1e-6)
    # ... and it estimates KL(q || p) >= 0: the mean difference is positive by many standard errors.
    stderr = tf.math.reduce_std(out["log_qz"] - out["log_pz"], axis=0) / np.sqrt(4000)
    assert np.all(kl > 3 * stderr), (kl, stderr)
    # Sampling and training go through the prior too.
    model.compile(optimizer="adam")
    history = model.fit(binary_images(16), batch_size=8, epochs=1, verbose=0).history
    assert np.isfinite(history["kl"][-1]) and model.sample(3, seed=[0, 1]).shape == (3, 8, 8, 1)


@pytest.mark.parametrize("name", [
    "wake_sleep", "rws", "iwae_dreg",
    pytest.param("ais_vae", marks=pytest.mark.xfail(strict=True, reason=(
        "not yet understood: after Grappler, reads of the decoder in the AIS chains (decoder_3/5/7, "
        "whose values reach the metrics and the step-size adaptation) are still unordered with the "
        "decoder optimizer's writes; gating the gradients on every tensor of the step does not help"))),
])
def test_every_variable_read_of_a_step_comes_before_the_optimizer_writes(name):
    # Wake-sleep reads q(z|x) in the wake phase and p(x|z) in the dreams only for the other group's
    # loss and the metrics; Grappler dropped their ordering before the shared optimizer's writes,
    # so fits with all noise fixed sometimes differed from the second batch on.
    model = tiny_model(name)
    model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=False, steps_per_execution=1)
    assert unordered_variable_accesses(model) == []
