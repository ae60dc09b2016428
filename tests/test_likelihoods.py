"""Likelihood layers p(x|z): values and gradients against TFP, shapes, dtypes, sampling, saving."""
import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfdgm import distributions as dists

tfd = tfp.distributions

K, B, SHAPE = 3, 4, (5, 5, 2)  # [K, B] leading axes, 2 channels
EVENT = len(SHAPE)


def _params(likelihood, seed=(1, 1), scale=2.0):
    shape = [K, B, *SHAPE[:-1], likelihood.num_params(SHAPE[-1])]
    return tf.random.stateless_normal(shape, seed=seed) * scale


def _data(name, seed=(2, 2)):
    u = tf.random.stateless_uniform([B, *SHAPE], seed=seed)
    if name == "bernoulli":
        return tf.cast(u < 0.5, tf.float32)
    if name == "discretized_logistic":
        # Include both edge bins on purpose.
        x = tf.round(u * 255) / 255
        return tf.concat([tf.zeros_like(x[:1]), tf.ones_like(x[:1]), x[2:]], axis=0)
    return u


def _built(name):
    likelihood = dists.get_likelihood(name)
    likelihood.build(SHAPE)
    return likelihood


def _reference(name, likelihood, params):
    """The same p(x|z) built directly from TFP."""
    if name == "bernoulli":
        return tfd.Independent(tfd.Bernoulli(logits=params), EVENT)
    if name == "gaussian":
        return tfd.Independent(tfd.Normal(params, likelihood.scale), EVENT)
    if name == "gaussian_predicted_scale":
        loc, raw = tf.split(params, 2, axis=-1)
        return tfd.Independent(tfd.Normal(loc, likelihood.min_scale + tf.math.softplus(raw)), EVENT)
    loc, log_scale = tf.split(params, 2, axis=-1)
    # Bins (k - 1/2, k + 1/2] on the 0..255 scale; QuantizedDistribution uses (k - 1, k], hence -1/2.
    logistic = tfd.Logistic(255.0 * loc - 0.5, 255.0 * tf.exp(tf.clip_by_value(log_scale, -7.0, 7.0)))
    return tfd.Independent(tfd.QuantizedDistribution(logistic, low=0.0, high=255.0), EVENT)


@pytest.mark.parametrize("name", ["bernoulli", "gaussian", "discretized_logistic", "gaussian_predicted_scale"])
def test_log_prob_and_gradient_match_tfp(name):
    likelihood = _built(name)
    # Moderate params for the logistic so TFP's own CDF difference is well conditioned.
    params = tf.Variable(_params(likelihood, scale=0.5 if name == "discretized_logistic" else 2.0))
    x = _data(name)
    scale = 255.0 if name == "discretized_logistic" else 1.0
    upstream = tf.random.stateless_normal([K, B], seed=[3, 3])
    with tf.GradientTape(persistent=True) as tape:
        ours = likelihood.log_prob(params, x, EVENT)
        reference = _reference(name, likelihood, params).log_prob(x * scale)
        ours_loss, reference_loss = tf.reduce_sum(ours * upstream), tf.reduce_sum(reference * upstream)
    assert ours.shape == (K, B) and ours.dtype == tf.float32
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(tape.gradient(ours_loss, params), tape.gradient(reference_loss, params),
                               rtol=1e-3, atol=1e-4)


def test_learned_gaussian_scale_is_trainable_bounded_and_matches_tfp():
    likelihood = dists.GaussianLikelihood(scale="learned", min_scale=0.01, init_scale=0.5)
    likelihood.build(SHAPE)
    assert [v.shape for v in likelihood.trainable_variables] == [(SHAPE[-1],)]
    np.testing.assert_allclose(likelihood.stddev(), [0.5, 0.5], rtol=1e-6)
    likelihood.raw_scale.assign([-1e4, 0.3])  # a collapsing scale stops at min_scale
    scale = likelihood.stddev()
    assert scale.numpy()[0] == pytest.approx(0.01)
    params, x = _params(likelihood), _data("gaussian")
    with tf.GradientTape(persistent=True) as tape:
        ours = likelihood.log_prob(params, x, EVENT)
        reference = tfd.Independent(tfd.Normal(params, likelihood.stddev()), EVENT).log_prob(x)
    np.testing.assert_allclose(ours, reference, rtol=1e-5)
    ours_grad = tape.gradient(ours, likelihood.raw_scale)
    np.testing.assert_allclose(ours_grad, tape.gradient(reference, likelihood.raw_scale), rtol=1e-4, atol=1e-6)
    assert np.all(np.isfinite(ours_grad))


def test_learned_gaussian_without_build_says_how_to_build_it():
    with pytest.raises(ValueError, match=r"build\(example_shape\)"):
        dists.GaussianLikelihood(scale="learned").stddev()


@pytest.mark.parametrize("kwargs", [{"scale": 0.0}, {"scale": "fixed"}, {"scale": -1.0}, {"min_scale": 2.0}])
def test_gaussian_rejects_bad_scales(kwargs):
    with pytest.raises(ValueError, match="scale"):
        dists.GaussianLikelihood(**kwargs)


@pytest.mark.parametrize("seed", [(0, 0), (4, 9)])
def test_discretized_logistic_sums_to_one_over_the_256_values(seed):
    likelihood = dists.DiscretizedLogisticLikelihood()
    # Random locs well outside [0, 1] and log-scales from -9 (clipped to -7) to 3.
    loc = tf.random.stateless_uniform([50, 1], seed=seed, minval=-0.5, maxval=1.5)
    log_scale = tf.random.stateless_uniform([50, 1], seed=[seed[0], seed[1] + 1], minval=-9.0, maxval=3.0)
    params = tf.concat([loc, log_scale], axis=-1)[:, None, :]  # [50 pixels, 1 value axis, 2]
    grid = tf.reshape(tf.range(256, dtype=tf.float32) / 255, [1, 256, 1])
    log_p = likelihood.log_prob(params, grid, event_ndims=1)  # [50, 256]
    assert np.all(np.isfinite(log_p))
    np.testing.assert_allclose(tf.reduce_sum(tf.exp(log_p), axis=-1), np.ones(50), rtol=2e-5)


def test_discretized_logistic_is_finite_far_in_the_tails():
    likelihood = dists.DiscretizedLogisticLikelihood()
    params = tf.Variable([[1e3, -7.0], [-50.0, -7.0], [0.5, -20.0], [0.5, 30.0]])
    x = tf.constant([[0.0], [1.0], [128 / 255], [1 / 255]])
    with tf.GradientTape() as tape:
        log_p = likelihood.log_prob(params, x, event_ndims=1)
    grad = tape.gradient(log_p, params)
    assert np.all(np.isfinite(log_p)) and np.all(np.isfinite(grad))
    # x = 0 with loc = 1000 at scale e^-7 is ~1.1e6 nats down, not -inf.
    assert -2e6 < log_p.numpy()[0] < -1e5


@pytest.mark.parametrize("name", ["bernoulli", "gaussian", "discretized_logistic", "gaussian_predicted_scale"])
def test_bfloat16_params_give_float32_log_probs(name):
    likelihood = _built(name)
    params = _params(likelihood, scale=0.5)
    x = _data(name)
    low = likelihood.log_prob(tf.cast(params, tf.bfloat16), x, EVENT)
    assert low.dtype == tf.float32 and low.shape == (K, B)
    exact = likelihood.log_prob(tf.cast(tf.cast(params, tf.bfloat16), tf.float32), x, EVENT)
    np.testing.assert_allclose(low, exact, rtol=1e-6)
    assert likelihood.mean(tf.cast(params, tf.bfloat16)).dtype == tf.float32


@pytest.mark.parametrize("name", ["bernoulli", "gaussian", "discretized_logistic", "gaussian_predicted_scale"])
def test_mean_sample_and_distribution_shapes(name):
    likelihood = _built(name)
    params = _params(likelihood, scale=0.5)
    mean = likelihood.mean(params)
    assert mean.shape == (K, B, *SHAPE) and mean.dtype == tf.float32
    draw = likelihood.sample(params, EVENT, seed=tf.constant([5, 6]))
    assert draw.shape == (K, B, *SHAPE) and draw.dtype == tf.float32
    np.testing.assert_array_equal(draw, likelihood.sample(params, EVENT, seed=[5, 6]))
    assert not np.array_equal(draw, likelihood.sample(params, EVENT, seed=[5, 7]))
    if not name.startswith("gaussian"):
        assert np.all((draw.numpy() >= 0) & (draw.numpy() <= 1))
    if name == "discretized_logistic":
        np.testing.assert_allclose(draw * 255, np.round(draw * 255), atol=1e-4)
        assert np.all((mean.numpy() >= 0) & (mean.numpy() <= 1))
    p = likelihood.distribution(params, EVENT)
    assert p.batch_shape == (K, B) and p.event_shape == SHAPE
    x = _data(name)
    np.testing.assert_allclose(p.log_prob(x), likelihood.log_prob(params, x, EVENT), rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("name", ["bernoulli", "gaussian", "discretized_logistic", "gaussian_predicted_scale"])
def test_sample_means_match_the_distribution(name):
    """Monte Carlo check of `sample`: the empirical mean per pixel equals the exact one."""
    likelihood = _built(name)
    params = _params(likelihood, seed=(8, 8), scale=0.3)[0, 0]  # one image [5, 5, P*C]
    n = 4000
    draws = likelihood.sample(tf.broadcast_to(params, [n, *params.shape]), EVENT, seed=[1, 2])
    exact = likelihood.distribution(params, EVENT).distribution.mean()
    se = tf.math.reduce_std(draws, axis=0) / np.sqrt(n) + 1e-6
    assert np.all(np.abs(tf.reduce_mean(draws, axis=0) - exact) < 5 * se)


def test_get_likelihood_accepts_names_instances_and_dicts():
    assert dists.LIKELIHOOD_NAMES == ("bernoulli", "gaussian", "gaussian_predicted_scale", "discretized_logistic")
    assert isinstance(dists.get_likelihood("Gaussian"), dists.GaussianLikelihood)
    layer = dists.DiscretizedLogisticLikelihood(min_log_scale=-5.0)
    assert dists.get_likelihood(layer) is layer
    again = dists.get_likelihood(keras.saving.serialize_keras_object(layer))
    assert isinstance(again, dists.DiscretizedLogisticLikelihood) and again.min_log_scale == -5.0
    assert again.params_per_channel == 2 and again.num_params(3) == 6 and again.data_name == "discretized_logistic"
    from_file = dists.get_likelihood({"name": "gaussian", "scale": "learned", "min_scale": 0.01})
    assert from_file.learned and from_file.min_scale == 0.01  # the dict a config file holds
    for bad in ("poisson", {"name": "poisson"}, None, 3):
        with pytest.raises(ValueError, match=r"Unknown likelihood .*'bernoulli', 'gaussian', 'gaussian_predicted_scale', 'discretized_logistic'"):
            dists.get_likelihood(bad)


@pytest.mark.parametrize("layer", [
    dists.BernoulliLikelihood(),
    dists.GaussianLikelihood(scale=0.3),
    dists.GaussianLikelihood(scale="learned", min_scale=0.05),
    dists.DiscretizedLogisticLikelihood(max_log_scale=2.0),
])
def test_serialisation_round_trip_keeps_the_config(layer):
    config = keras.saving.serialize_keras_object(layer)
    again = keras.saving.deserialize_keras_object(config, safe_mode=True)
    assert type(again) is type(layer)
    assert again.get_config() == layer.get_config()
    assert again.dtype == "float32"


@keras.saving.register_keras_serializable(package="tfdgm_tests")
class _Holder(keras.Model):
    """A minimal model holding a likelihood the way the model base does."""

    def __init__(self, likelihood="gaussian", **kwargs):
        super().__init__(**kwargs)
        self.likelihood = dists.get_likelihood(likelihood)
        self.likelihood.build(SHAPE)  # before compile: a learned scale must exist for the optimizer
        self.dense = keras.layers.Dense(2)
        self.dense.build((None, 2))
        self.built = True

    def call(self, x):
        return self.likelihood(self.dense(x))

    def get_config(self):
        return {**super().get_config(), "likelihood": keras.saving.serialize_keras_object(self.likelihood)}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def test_model_with_a_learned_scale_round_trips_through_a_keras_file(tmp_path):
    model = _Holder(dists.GaussianLikelihood(scale="learned"))
    assert any("raw_scale" in v.path for v in model.trainable_variables)
    model.likelihood.raw_scale.assign([0.25, -0.5])
    path = str(tmp_path / "holder.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded.likelihood, dists.GaussianLikelihood) and loaded.likelihood.learned
    np.testing.assert_allclose(loaded.likelihood.stddev(), model.likelihood.stddev())


def test_string_keyed_heads_accept_likelihood_layers():
    """The functions models call today delegate to a layer passed in place of the name."""
    likelihood = _built("gaussian")
    params, x = _params(likelihood), _data("gaussian")
    np.testing.assert_allclose(dists.likelihood_log_prob(likelihood, params, x, EVENT),
                               likelihood.log_prob(params, x, EVENT))
    assert isinstance(dists.likelihood_distribution(likelihood, params, EVENT).distribution, tfd.Normal)
    bernoulli = _params(dists.BernoulliLikelihood())
    np.testing.assert_allclose(dists.likelihood_log_prob("bernoulli", bernoulli, _data("bernoulli"), EVENT),
                               dists.BernoulliLikelihood().log_prob(bernoulli, _data("bernoulli"), EVENT))


@pytest.mark.parametrize("name", ["bernoulli", "gaussian", "discretized_logistic", "gaussian_predicted_scale"])
def test_log_prob_and_gradient_compile_with_xla(name):
    likelihood = dists.get_likelihood(dists.GaussianLikelihood(scale="learned") if name == "gaussian" else name)
    likelihood.build(SHAPE)
    params, x = tf.Variable(_params(likelihood, scale=0.5)), _data(name)
    variables = [params] + likelihood.trainable_variables

    @tf.function(jit_compile=True)
    def step():
        with tf.GradientTape() as tape:
            loss = -tf.reduce_sum(likelihood.log_prob(params, x, EVENT))
        return loss, tape.gradient(loss, variables)

    loss, grads = step()
    np.testing.assert_allclose(loss, -tf.reduce_sum(likelihood.log_prob(params, x, EVENT)), rtol=1e-5)
    assert all(np.all(np.isfinite(g)) for g in grads) and len(grads) == (2 if name == "gaussian" else 1)


def test_an_optimizer_built_after_the_likelihood_trains_the_learned_scale():
    model = _Holder(dists.GaussianLikelihood(scale="learned"))
    optimizer = keras.optimizers.SGD(0.1)
    x = _data("gaussian")
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(model.likelihood.log_prob(tf.zeros_like(x) + 0.5, x, EVENT))
    before = model.likelihood.stddev().numpy()
    variables = model.likelihood.trainable_variables  # the decoder's group, in a real model
    assert all(any(v is w for w in model.trainable_variables) for v in variables)
    grads = tape.gradient(loss, variables)
    optimizer.apply(grads, variables)
    # Data within 0.5 of the mean: the initial scale 1.0 is too wide and must shrink.
    assert np.all(model.likelihood.stddev().numpy() < before)
