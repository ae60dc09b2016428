"""Score-function estimators (REINFORCE, NVIL, VIMCO) against exact answers on enumerable models.

The models are tiny sigmoid belief nets (2 Bernoulli units, or 2 categorical variables of 3
classes, over 6 binary pixels), so every expectation is a finite sum: the ELBO's gradient by
enumerating z, and E[IWAE-K]'s by enumerating all K-tuples (4^3 = 64 for K = 3). Each Monte
Carlo check averages R gradient estimates from `model.compute_gradients` (fresh noise each
call) and requires every component within 4.5 standard errors of the exact gradient (about 40
components: a false alarm has probability ~3e-4 under a fixed seed anyway); each also checks
that the exact gradient is many standard errors from 0, so the comparison has the power to see a
missing score term.
"""
import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import harness
from tfdgm import estimators, models
from tfdgm.distributions import discrete

PIXELS = 6
X = np.array([[1, 0, 1, 1, 0, 0], [0, 1, 1, 0, 1, 1]], dtype="float32")
REPEAT = 400  # copies of each example per call: one call averages 400 independent draws per example
DRAWS = 60  # calls
Z_LIMIT = 4.5


def tiny(name, **kwargs):
    keras.utils.set_random_seed(0)
    settings = dict(input_shape=(PIXELS,), latent_dim=2, hidden_units=(), seed=3)
    model = models.get_model_class(name)(**{**settings, **kwargs})
    # Non-trivial weights: prior and decoder far from their symmetric initial values.
    rng = np.random.default_rng(1)
    for v in model.trainable_variables:
        v.assign(rng.normal(scale=1.0, size=v.shape).astype("float32"))
    return model


def configurations(model):
    """Every latent value z [M, total width] of a tiny model."""
    if model.latent == "categorical":
        eye = np.eye(model.num_classes, dtype="float32")
        rows = [np.concatenate(c) for c in itertools.product(eye, repeat=model.num_variables)]
        return tf.constant(np.stack(rows))
    return discrete.enumerate_bernoulli(model.total_latent_dim)


def log_table(model, x):
    """(log q(z_m|x_b), log w(z_m, x_b)), each [M, B], differentiable in every parameter."""
    z = configurations(model)
    z = tf.broadcast_to(z[:, None, :], [z.shape[0], x.shape[0], z.shape[1]])
    log_q = model.posterior_log_prob(x, z)
    log_pz, log_px_z = model.log_prior_and_likelihood(z, x)
    return log_q, log_pz + log_px_z - log_q


def exact_gradients(model, x, num_samples=1):
    """{group: flat gradient of -mean_b E[IWAE-K]} (K = 1: the ELBO), by enumeration."""
    groups = model.group_variables()
    with tf.GradientTape() as tape:
        log_q, log_w = log_table(model, x)
        tuples = np.array(list(itertools.product(range(log_q.shape[0]), repeat=num_samples)))  # [T, K]
        tuple_log_q = tf.reduce_sum(tf.gather(log_q, tuples.T), axis=0)  # [T, B]
        bound = estimators.iwae_bound(tf.transpose(tf.gather(log_w, tuples), [1, 0, 2]))  # [T, B]
        loss = -tf.reduce_mean(tf.reduce_sum(tf.exp(tuple_log_q) * bound, axis=0))
    variables = [v for g in sorted(groups) if g in ("p", "q") for v in groups[g]]
    flat = tape.gradient(loss, variables)
    out, start = {}, 0
    for g in sorted(groups):
        if g in ("p", "q"):
            out[g] = np.concatenate([np.ravel(t) for t in flat[start: start + len(groups[g])]])
            start += len(groups[g])
    return out


def sampled_gradients(model, x, draws=DRAWS, repeat=REPEAT):
    """{group: [draws, parameters]} of `model.compute_gradients` on x tiled `repeat` times."""
    batch = tf.constant(np.repeat(x, repeat, axis=0))
    step = tf.function(lambda b: model.compute_gradients(b)[0])
    rows = {}
    for _ in range(draws):
        for g, grads in step(batch).items():
            rows.setdefault(g, []).append(np.concatenate([np.ravel(t) for t in grads]))
    return {g: np.stack(r) for g, r in rows.items()}


def assert_unbiased(samples, exact, scale=None):
    scale = scale or {}
    for group, expected in exact.items():
        draws = samples[group]
        mean, se = draws.mean(0), draws.std(0, ddof=1) / np.sqrt(len(draws))
        target = expected * scale.get(group, 1.0)
        z = np.abs(mean - target) / se
        assert z.max() < Z_LIMIT, f"{group}: |mean - exact| / se up to {z.max():.1f} ({mean} vs {target})"
        # Power: a gradient of 0 (a lost score term, for q) would be rejected.
        assert (np.abs(target) / se).max() > 3 * Z_LIMIT, f"{group}: too few draws to tell the gradient from 0"


@pytest.mark.parametrize("kwargs", [
    dict(estimator="reinforce"),
    dict(estimator="reinforce", latent="categorical", latent_dim=2, num_classes=3),
    dict(estimator="reinforce", top_latent_dim=2),
    dict(estimator="nvil"),
], ids=["reinforce", "reinforce-categorical", "reinforce-two-layers", "nvil-baseline-and-centring"])
def test_score_function_gradients_are_unbiased_for_the_elbo(kwargs):
    model = tiny("nvil", **kwargs)
    if model.estimator == "nvil":  # an arbitrary baseline b(x) and running mean c: still unbiased
        model.signal_mean.assign(-4.0)
        model.signal_variance.assign(0.5)  # sigma < 1: no rescaling
    assert_unbiased(sampled_gradients(model, X), exact_gradients(model, X))


def test_nvil_variance_normalisation_rescales_only_the_score_part():
    """With a running std sigma > 1 the q-gradient's expectation is the exact one / sigma (its
    pathwise part has expectation 0); p's is unchanged."""
    model = tiny("nvil")
    model.signal_mean.assign(-4.0)
    model.signal_variance.assign(4.0)
    assert_unbiased(sampled_gradients(model, X), exact_gradients(model, X), scale={"q": 0.5})


@pytest.mark.parametrize("kwargs", [dict(), dict(latent="categorical", latent_dim=2, num_classes=3)],
                         ids=["bernoulli", "categorical"])
def test_vimco_gradient_is_unbiased_for_the_expected_iwae_bound(kwargs):
    model = tiny("vimco", num_samples=3, **kwargs)
    if model.latent == "categorical":  # 9^3 tuples: fine, but keep the draws' cost the same
        model = tiny("vimco", num_samples=2, **kwargs)
    assert_unbiased(sampled_gradients(model, X), exact_gradients(model, X, model.num_samples))


def total_variance(draws):
    return draws.var(0, ddof=1).sum()


def assert_smaller_variance(reduced, plain, draws):
    # Relative standard error of a variance from n draws is about sqrt(2 / (n - 1)) (heavier tails
    # widen it: the margin below is 4 of them on each side).
    rel = 4 * np.sqrt(2.0 / (draws - 1))
    assert reduced * (1 + rel) < plain * (1 - rel), (reduced, plain)


def test_a_learned_nvil_baseline_reduces_the_q_gradient_variance():
    draws = 200
    plain = tiny("nvil", estimator="reinforce")
    nvil = tiny("nvil")
    # Train only the baseline network and the running mean (p and q have learning rate 0), so
    # both models estimate the gradient at the same parameters.
    nvil.compile(optimizer=keras.optimizers.SGD(0.0), optimizers={"baseline": keras.optimizers.Adam(0.05)})
    nvil.fit(np.repeat(X, 32, axis=0), epochs=30, batch_size=16, verbose=0)
    for a, b in zip(plain.group_variables()["q"], nvil.group_variables()["q"]):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    nvil.signal_variance.assign(1.0)  # compare the centred signal, not the rescaling
    v_plain = total_variance(sampled_gradients(plain, X, draws, repeat=1)["q"])
    v_nvil = total_variance(sampled_gradients(nvil, X, draws, repeat=1)["q"])
    assert_smaller_variance(v_nvil, v_plain, draws)


def test_vimco_leave_one_out_baselines_reduce_variance():
    """VIMCO's q-gradient against the same K samples' score function with signal L for every k."""
    draws = 200
    model = tiny("vimco", num_samples=5)
    q_vars = model.group_variables()["q"]
    x = tf.constant(X)

    @tf.function
    def both():
        with tf.GradientTape(persistent=True) as tape:
            out = model.log_weights(x, 5, reparameterize=False)
            bound = estimators.iwae_bound(out["log_w"])
            naive = -(tf.reduce_sum(tf.stop_gradient(bound)[None] * out["log_qz"], 0) + bound)
            vimco = estimators.vimco_surrogate(out["log_w"], out["log_qz"])
            losses = [tf.reduce_mean(vimco), tf.reduce_mean(naive)]
        grads = [tape.gradient(loss, q_vars) for loss in losses]
        return [tf.concat([tf.reshape(g, [-1]) for g in gs], 0) for gs in grads]

    rows = np.array([[g.numpy() for g in both()] for _ in range(draws)])  # [draws, 2, params]
    np.testing.assert_allclose(rows[:, 0].mean(0), rows[:, 1].mean(0),
                               atol=Z_LIMIT * np.sqrt(2 * rows.var(0).max(0) / draws).max())
    assert_smaller_variance(total_variance(rows[:, 0]), total_variance(rows[:, 1]), draws)


# ---------------------------------------------------------------- VIMCO against float64 numpy
def _logsumexp(a, axis=0):
    top = a.max(axis=axis, keepdims=True)
    return (top + np.log(np.exp(a - top).sum(axis=axis, keepdims=True))).squeeze(axis)


def vimco_reference(log_w):
    """(L [B], signals L - L_{-k} [K, B], softmax weights [K, B]) in float64, one k at a time."""
    log_w = np.asarray(log_w, np.float64)
    num = log_w.shape[0]
    bound = _logsumexp(log_w) - np.log(num)
    loo = []
    for k in range(num):
        row = log_w.copy()
        row[k] = np.delete(log_w, k, axis=0).mean(0)
        loo.append(_logsumexp(row) - np.log(num))
    weights = np.exp(log_w - _logsumexp(log_w)[None])
    return bound, bound[None] - np.stack(loo), weights


@pytest.mark.parametrize("scale, offset, num", [(1.0, 0.0, 5), (30.0, -200.0, 7), (3.0, -1e4, 50), (1.0, 0.0, 2)])
def test_vimco_value_and_gradient_match_a_float64_reference(scale, offset, num):
    rng = np.random.default_rng(int(scale) + num)
    log_w = (offset + scale * rng.normal(size=(num, 4))).astype("float32")
    log_q = rng.normal(size=(num, 4)).astype("float32")
    lw, lq = tf.constant(log_w), tf.constant(log_q)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([lw, lq])
        loss = estimators.vimco_surrogate(lw, lq)
    bound, signals, weights = vimco_reference(log_w)
    np.testing.assert_allclose(-loss.numpy(), bound, rtol=1e-6, atol=1e-4)
    # d loss / d log q_k = -(L - L_{-k});  d loss / d log w_k = -w~_k (the pathwise part).
    np.testing.assert_allclose(-tape.gradient(loss, lq).numpy(), signals, rtol=1e-4, atol=1e-4 * scale)
    np.testing.assert_allclose(-tape.gradient(loss, lw).numpy(), weights, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(estimators.vimco_learning_signals(lw).numpy(), signals, rtol=1e-4, atol=1e-4 * scale)


def test_vimco_needs_two_samples():
    with pytest.raises(ValueError, match="K >= 2"):
        estimators.vimco_leave_one_out_bounds(tf.zeros([1, 3]))
    with pytest.raises(ValueError, match="num_samples >= 2"):
        models.VIMCO(input_shape=(PIXELS,), latent_dim=2, num_samples=1)


def test_reinforce_surrogate_value_is_minus_the_elbo_and_its_gradients_are_the_signal():
    log_w = tf.constant([[-3.0, -1.0], [-2.0, -5.0]])
    log_q = tf.constant([[-0.5, -0.2], [-0.1, -0.9]])
    signal = estimators.nvil_learning_signal(log_w, tf.constant([1.0, -1.0]), -2.0, 9.0)
    np.testing.assert_allclose(signal.numpy(), (log_w.numpy() - np.array([1.0, -1.0]) + 2.0) / 3.0, rtol=1e-6)
    with tf.GradientTape() as tape:
        tape.watch(log_q)
        loss = estimators.reinforce_surrogate(log_w, log_q, signal)
    np.testing.assert_allclose(loss.numpy(), -log_w.numpy().mean(0), rtol=1e-6)  # exactly -ELBO
    np.testing.assert_allclose(tape.gradient(loss, log_q).numpy(), -signal.numpy() / 2, rtol=1e-6)


# ---------------------------------------------------------------- the NVIL baseline network
def test_the_baseline_network_receives_gradients_and_learns():
    model = harness.tiny_model("nvil")
    groups = model.group_variables()
    assert groups["baseline"] and all(v.trainable for v in groups["baseline"])
    x = harness.binary_images(32)
    grads, _, _ = model.compute_gradients(tf.constant(x))
    for v, g in zip(groups["baseline"], grads["baseline"]):
        assert g is not None and float(tf.norm(g)) > 0, f"no gradient reaches {v.path}"
    before = [v.numpy().copy() for v in groups["baseline"]]
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(x, epochs=15, batch_size=16, verbose=0).history
    assert all(not np.array_equal(b, v.numpy()) for b, v in zip(before, groups["baseline"]))
    assert history["baseline_error"][-1] < 0.5 * history["baseline_error"][0]
    assert float(model.signal_mean) < -1.0  # the running mean followed the (negative) ELBO


def test_reinforce_has_no_baseline_group_and_bad_options_are_refused():
    assert set(tiny("nvil", estimator="reinforce").parameter_groups()) == {"p", "q"}
    with pytest.raises(ValueError, match="estimator"):
        tiny("nvil", estimator="reinforced")
    with pytest.raises(ValueError, match="moment_decay"):
        tiny("nvil", moment_decay=1.0)
    with pytest.raises(ValueError, match="num_classes"):
        tiny("nvil", latent="categorical", num_classes=1)
    with pytest.raises(ValueError, match="number of latent variables"):
        tiny("nvil", latent="categorical", latent_dim=0, num_classes=3)
    with pytest.raises(ValueError, match="top_latent_dim"):
        tiny("vimco", latent="categorical", top_latent_dim=2)


# ---------------------------------------------------------------- training
@pytest.mark.parametrize("name, kwargs", [("nvil", {}), ("nvil", {"latent": "categorical", "latent_dim": 2, "num_classes": 3}),
                                          ("vimco", {"num_samples": 5})], ids=["nvil", "nvil-categorical", "vimco"])
def test_training_improves_the_held_out_bound(name, kwargs):
    model = harness.tiny_model(name, **kwargs)
    # One call, so that both halves share binary_images's pixel probabilities.
    data = harness.binary_images(640, seed=0)
    train, test = data[:512], data[512:]
    before = model.log_likelihood_bound(test, num_samples=50, seed=0).numpy()
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    model.fit(train, epochs=10, batch_size=32, verbose=0)
    after = model.log_likelihood_bound(test, num_samples=50, seed=0).numpy()
    gain = after - before
    assert gain.mean() > 4 * gain.std(ddof=1) / np.sqrt(len(gain)) and gain.mean() > 1.0, (before.mean(), after.mean())


def test_vimco_signals_are_finite_and_the_same_under_xla():
    """XLA-compiled leave-one-out bounds at spreads of 10-100 nats (tfp.stats.log_soomean_exp,
    which subtracts exponentials, returns NaN there under XLA)."""
    rng = np.random.default_rng(0)
    compiled = tf.function(estimators.vimco_learning_signals, jit_compile=True)
    for scale in (10.0, 100.0):
        log_w = tf.constant((-500.0 + scale * rng.normal(size=(5, 64))).astype("float32"))
        _, signals, _ = vimco_reference(log_w.numpy())
        np.testing.assert_allclose(compiled(log_w).numpy(), signals, rtol=1e-4, atol=1e-4 * scale)
