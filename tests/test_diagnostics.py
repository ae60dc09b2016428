"""Posterior-collapse diagnostics against closed forms, and the LatentDiagnostics callback.

Exact answers come from models whose encoder (and decoder) are replaced by known Gaussian
families: x carries a scalar u_n in its first pixel and q(z|x_n) = N(a*u_n + b, s^2) per dim.
u_n are standardised normal quantiles, so mean(u) = 0 and Var(u) = 1 exactly and closed forms
need no sampling error of u. Monte-Carlo checks use 4 reported standard errors (a two-sided
normal tail of 6e-5; the seeds are fixed, so the tests are deterministic anyway).
"""
import json
import math
from statistics import NormalDist

import numpy as np
import pytest
import tensorflow as tf

from harness import binary_images, tiny_model
from tfdgm import callbacks as cbs
from tfdgm.evaluation import diagnostics

SHAPE = (8, 8, 1)


def _quantiles(n):
    u = np.array([NormalDist().inv_cdf((i + 0.5) / n) for i in range(n)])
    return (u - u.mean()) / u.std()


def _data(u):
    x = np.zeros((len(u),) + SHAPE, np.float32)
    x[:, 0, 0, 0] = u
    return x


def _gaussian_model(monkeypatch, a, b, s):
    """A tiny VAE whose q(z|x) is N(a*u + b, diag(s^2)), u = x[..., 0, 0, 0]; a, b, s are [D]."""
    a, b, s = (tf.constant(v, tf.float32) for v in (a, b, s))
    model = tiny_model("vae", latent_dim=int(a.shape[0]))

    def encoder(x):
        u = x[:, 0, 0, 0][:, None]
        return u * a + b, tf.ones_like(u) * s

    monkeypatch.setattr(model, "encoder", encoder)
    return model


def _mixture_mi(centres, s):
    """Exact I_q(x; z) for a 1-D mixture q(z) = mean_n N(centres_n, s^2) by quadrature:
    H(q(z)) - H(q(z|x)). The integrand is smooth on the scale s = 0.5 >> the grid step 0.004, and
    the tails beyond +-(max|centre| + 12 s) hold < 1e-30 of the mass."""
    lim = np.abs(centres).max() + 12 * s
    grid = np.linspace(-lim, lim, 6001)
    log_densities = -0.5 * ((grid[:, None] - centres[None, :]) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)
    top = log_densities.max(axis=1)
    log_q = top + np.log(np.exp(log_densities - top[:, None]).mean(axis=1))
    entropy = -np.trapezoid(np.exp(log_q) * log_q, grid)
    return entropy - 0.5 * math.log(2 * math.pi * math.e * s**2)


# ---------------------------------------------------------------------------- exact answers
def test_active_units_and_kl_per_dimension_match_closed_forms(monkeypatch):
    a = np.array([0.7, 0.15, 0.05, 0.0])  # Var_x(E[z_i|x]) = a_i^2: 0.49, 0.0225, 0.0025, 0
    b = np.array([0.3, -1.0, 0.0, 0.5])
    s = np.array([0.5, 1.2, 1.0, 0.8])
    model = _gaussian_model(monkeypatch, a, b, s)
    x = _data(_quantiles(500))

    count, activity = diagnostics.active_units(model, x, threshold=1e-2)
    assert count == 2
    # float32 encoder outputs: the variances carry relative errors ~1e-7.
    np.testing.assert_allclose(activity, a**2, rtol=1e-5, atol=1e-7)

    # Analytic E_x KL(N(a u + b, s^2) || N(0, 1)) = 0.5 (a^2 Var(u) + b^2 + s^2 - 1) - log s.
    expected = 0.5 * (a**2 + b**2 + s**2 - 1.0) - np.log(s)
    kl = diagnostics.kl_per_dimension(model, x, batch_size=64)
    np.testing.assert_allclose(kl, expected, rtol=1e-5, atol=1e-6)
    model_kl = model.kl_divergence(model.posterior(x)).numpy().mean()
    np.testing.assert_allclose(kl.sum(), model_kl, rtol=1e-5)

    # One pass, any batching, arrays or datasets: the same statistics (up to float32 rounding,
    # which differs with the batch size in vectorised kernels).
    from_dataset = diagnostics.posterior_statistics(model, tf.data.Dataset.from_tensor_slices(x).batch(37))
    from_array = diagnostics.posterior_statistics(model, x, batch_size=500)
    for got, want in zip(from_dataset, from_array):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    summary = diagnostics.latent_diagnostics(model, x, num_prior_samples=0)
    assert summary["active_units"] == 2 and summary["kl_per_dim"] == kl.tolist()


def test_mutual_information_is_zero_when_q_ignores_x(monkeypatch):
    b, s = np.array([0.7, -0.2]), np.array([0.3, 1.5])
    model = _gaussian_model(monkeypatch, np.zeros(2), b, s)
    result = diagnostics.mutual_information(model, _data(_quantiles(300)), num_samples=2, num_prior_samples=0)
    # Every component of q(z) equals q(z|x), so log q(z|x) - log q(z) is 0 up to float64 rounding.
    assert abs(result["mutual_information"]) < 1e-9
    # Then E_x KL(q(z|x) || p(z)) is all gap: KL(q(z) || p(z)) = the analytic KL, within MC error.
    kl = float(np.sum(0.5 * (b**2 + s**2 - 1.0) - np.log(s)))
    assert result["mutual_information_upper_bound"] == pytest.approx(kl, rel=1e-5)
    assert abs(result["kl_aggregate_posterior_to_prior"] - kl) < 4 * result["kl_aggregate_posterior_to_prior_stderr"]
    assert diagnostics.active_units(model, _data(_quantiles(300)))[0] == 0


def test_mutual_information_of_jointly_gaussian_latents(monkeypatch):
    # Dim 0: z = a u + s eps with u ~ N(0, 1) in the large-N limit, so I = 0.5 log(1 + a^2/s^2)
    # and q(z) = N(0, a^2 + s^2); dim 1 is the prior itself (collapsed), contributing nothing.
    a, s, n = 1.5, 0.5, 2000  # I = 1.15 nats, far below the estimator's ceiling log N = 7.6
    u = _quantiles(n)
    model = _gaussian_model(monkeypatch, [a, 0.0], [0.0, 0.0], [s, 1.0])
    result = diagnostics.mutual_information(model, _data(u), num_samples=4, num_prior_samples=0)
    mi, mi_se = result["mutual_information"], result["mutual_information_stderr"]

    exact = _mixture_mi(a * u, s)  # exact for this data set's empirical p_data
    limit = 0.5 * math.log(1.0 + a**2 * u.var() / s**2)
    # Quantile centres are 0.001-0.1 apart where the mass is, << s, so the mixture is Gaussian
    # to within a discretisation error far below the MC tolerance (it is ~1e-5 here).
    assert abs(exact - limit) < 1e-3
    assert abs(mi - exact) < 4 * mi_se
    assert 0.0 < mi_se < 0.03  # the tolerance above is a real test (7% of I at most)

    kl_agg = 0.5 * (a**2 + s**2 - 1.0 - math.log(a**2 + s**2))  # KL(N(0, a^2+s^2) || N(0, 1))
    assert abs(result["kl_aggregate_posterior_to_prior"] - kl_agg) < 4 * result["kl_aggregate_posterior_to_prior_stderr"]
    mean_kl = 0.5 * (a**2 + s**2 - 1.0) - math.log(s)
    assert result["mutual_information_upper_bound"] == pytest.approx(mean_kl, rel=1e-5)
    # E_x KL = I + KL(q(z) || p(z)) exactly, and so the upper bound holds (gap 0.29 >> stderr).
    assert mean_kl == pytest.approx(limit + kl_agg, abs=1e-12)
    assert mi + 4 * mi_se < result["mutual_information_upper_bound"]
    # Chunking over the N = 2000 posteriors and the S*N = 8000 draws (uneven 1024-blocks) is exact.
    chunked = diagnostics.mutual_information(model, _data(u), num_samples=4, num_prior_samples=0,
                                             max_elements=2**20)
    assert chunked["mutual_information"] == pytest.approx(mi, abs=1e-9)


def test_lecture_lower_bound_on_model_mutual_information(monkeypatch):
    # p(x|z): pixel 0 = 1[z_0 > 0] (logit 1e4 z_0), other pixels fair coins, so I_p(x; z) = log 2.
    # q(z_0|x) is the Gaussian matching the half-normal p(z_0|x) in moments, mean +-sqrt(2/pi) and
    # variance v = 1 - 2/pi; q(z_1|x) = p(z_1). Then H(z) + E_p[log q(z|x)] = -0.5 log v = 0.507.
    model = tiny_model("vae", latent_dim=2)
    v = 1.0 - 2.0 / math.pi

    def decoder(z):
        logits = tf.pad(1e4 * z[:, :1], [[0, 0], [0, 63]])
        return tf.reshape(logits, [-1] + list(SHAPE))

    def encoder(x):
        sign = 2.0 * x[:, 0, 0, 0][:, None] - 1.0
        loc = tf.concat([sign * math.sqrt(2.0 / math.pi), tf.zeros_like(sign)], axis=1)
        return loc, tf.concat([tf.ones_like(sign) * math.sqrt(v), tf.ones_like(sign)], axis=1)

    monkeypatch.setattr(model, "decoder", decoder)
    monkeypatch.setattr(model, "encoder", encoder)
    result = diagnostics.mutual_information(model, binary_images(8), num_prior_samples=4000, batch_size=500)
    bound, se = result["model_mutual_information_lower_bound"], result["model_mutual_information_lower_bound_stderr"]
    assert 0.0 < se < 0.03
    assert abs(bound - (-0.5 * math.log(v))) < 4 * se
    assert bound + 4 * se < math.log(2.0)  # a strict lower bound here: q is not the true posterior


def test_latent_diagnostics_is_json_deterministic_and_consistent():
    model = tiny_model("vae")
    x = binary_images(64)
    result = diagnostics.latent_diagnostics(model, x, num_prior_samples=200)
    assert json.loads(json.dumps(result)) == result
    assert result == diagnostics.latent_diagnostics(model, x, num_prior_samples=200)  # stateless seeds
    assert result["num_examples"] == 64 and len(result["kl_per_dim"]) == model.latent_dim
    assert result["kl"] == pytest.approx(sum(result["kl_per_dim"]), rel=1e-12)
    assert result["mutual_information_upper_bound"] == pytest.approx(result["kl"], rel=1e-12)
    assert 0.0 <= result["mutual_information"] <= math.log(64)  # the empirical MI's ceiling
    assert result["active_units"] == sum(a > 1e-2 for a in result["activity_per_dim"])


def test_empty_data_raises_a_clear_error():
    model = tiny_model("vae")
    empty = np.zeros((0,) + SHAPE, np.float32)
    with pytest.raises(ValueError, match="empty data set"):
        diagnostics.latent_diagnostics(model, empty)
    with pytest.raises(ValueError, match="empty data set"):
        diagnostics.active_units(model, tf.data.Dataset.from_tensor_slices(empty).batch(10))
    with pytest.raises(ValueError, match="num_samples"):
        diagnostics.mutual_information(model, binary_images(4), num_samples=0)
    with pytest.raises(ValueError, match="no held-out examples"):
        cbs.LatentDiagnostics(empty)


# ---------------------------------------------------------------------------- the callback
def test_callback_adds_diagnostics_to_history():
    model = tiny_model("vae")
    model.compile(optimizer="adam")
    held_out = binary_images(50, seed=1)
    every = cbs.LatentDiagnostics(held_out, num_prior_samples=100, print_fn=lambda *_: None)
    second = cbs.LatentDiagnostics(held_out, every_n_epochs=2, prefix="second_", num_prior_samples=0,
                                   print_fn=lambda *_: None)
    history = model.fit(binary_images(64), epochs=2, batch_size=32, verbose=0, callbacks=[every, second])
    for name in cbs.LatentDiagnostics.LOGGED:
        values = history.history["latent_" + name]
        assert len(values) == 2 and all(math.isfinite(v) for v in values)
    assert len(history.history["kl"]) == 2  # the training metric is untouched, not overwritten
    assert len(history.history["second_mutual_information"]) == 1  # epoch 2 only
    assert "second_model_mutual_information_lower_bound" not in history.history  # not computed
    assert [epoch for epoch, _ in every.results] == [1, 2]


def test_callback_warns_once_when_the_posterior_collapses(monkeypatch):
    model = _gaussian_model(monkeypatch, np.zeros(3), np.zeros(3), np.ones(3))  # q(z|x) = p(z)
    messages = []
    callback = cbs.LatentDiagnostics(_data(_quantiles(100)), num_prior_samples=0, print_fn=messages.append)
    callback.set_model(model)
    logs = {"kl": 1.0}
    callback.on_epoch_end(0, logs)
    callback.on_epoch_end(1, {})
    assert logs["latent_active_units"] == 0.0 and logs["kl"] == 1.0
    assert abs(logs["latent_kl"]) < 1e-6 and abs(logs["latent_mutual_information"]) < 1e-9
    assert len(messages) == 1 and "0 of 3 latent units are active" in messages[0] and "collapsed" in messages[0]
