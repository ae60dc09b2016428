"""Wake-sleep and reweighted wake-sleep against exact answers on sigmoid belief nets small enough
to enumerate, with Bernoulli latents (3 units: 8 values of z) and categorical latents (2 variables of
3 classes: 9 values of z), over 4 binary pixels (16 values of x).

Every Monte Carlo gradient is the mean of R independent chunk estimates (each over many examples),
so its standard error comes from their spread; tolerances are multiples of it.
"""
import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdgm import estimators, models
from tfdgm.distributions import discrete

LATENTS, PIXELS, CHUNKS = 3, 4, 20
VARIABLES, CLASSES = 2, 3  # the categorical SBN's latent: 2 one-hot variables of 3 classes
X = np.array([[1, 0, 1, 1], [0, 0, 1, 0], [1, 1, 1, 0], [0, 1, 0, 1]], np.float32)
BOTH_LATENTS = pytest.mark.parametrize("latent", ["bernoulli", "categorical"])


def tiny_sbn(cls=models.RWS, seed=0, latent="bernoulli", **kwargs):
    """A one-layer SBN with fixed weights: a peaked posterior and a poor q (so bias is visible)."""
    size = dict(latent_dim=LATENTS) if latent == "bernoulli" else dict(latent_dim=VARIABLES, num_classes=CLASSES)
    model = cls(input_shape=(PIXELS,), latent=latent, hidden_units=(), seed=seed, **size, **kwargs)
    rng = np.random.default_rng(1)
    for v in model.trainable_variables:
        scale = {"decoder": 2.5, "encoder": 0.5}.get(v.path.split("/")[0], 1.0)
        v.assign(rng.normal(scale=scale, size=v.shape).astype(np.float32))
    return model


def sbn_parts(model):
    """(prior logits, decoder kernel, decoder bias, encoder kernel, encoder bias) as tensors."""
    dense_p = model.decoder.logits
    dense_q = model.encoder.logits
    return model.prior_layer.logits, dense_p.kernel, dense_p.bias, dense_q.kernel, dense_q.bias


def every_z(model):
    """Every value of the latent code, [M, code width]: binary vectors, or concatenated one-hots."""
    if model.latent == "bernoulli":
        return discrete.enumerate_bernoulli(LATENTS)
    eye = np.eye(CLASSES, dtype=np.float32)
    return tf.constant([np.concatenate([eye[c] for c in classes])
                        for classes in itertools.product(range(CLASSES), repeat=VARIABLES)])


def code_log_prob(model, z, logits):
    """log prob [M, ...] of codes z [M, D] under factorised logits [..., D], by hand."""
    if model.latent == "bernoulli":
        return tf.tensordot(z, tf.transpose(logits), 1) - tf.reduce_sum(tf.math.softplus(logits), -1)
    grouped = tf.reshape(logits, tf.concat([tf.shape(logits)[:-1], [VARIABLES, CLASSES]], 0))
    log_softmax = tf.reshape(tf.nn.log_softmax(grouped), tf.shape(logits))
    return tf.tensordot(z, tf.transpose(log_softmax), 1)


def exact_log_joint(model, x):
    """log p(z_m, x_b) [M, B] by hand (not through the model's code)."""
    b, w, c, _, _ = sbn_parts(model)
    z = every_z(model)
    log_pz = code_log_prob(model, z, b)
    logits = z @ w + c  # [M, 4]
    log_px_z = x @ tf.transpose(logits) - tf.reduce_sum(tf.math.softplus(logits), axis=-1)  # [B, M]
    return log_pz[:, None] + tf.transpose(log_px_z)


def exact_log_q(model, x):
    """log q(z_m|x_b) [M, B] by hand."""
    _, _, _, v, d = sbn_parts(model)
    return code_log_prob(model, every_z(model), tf.constant(x) @ v + d)


def flat(grads):
    return np.concatenate([np.ravel(g.numpy()) if g is not None else np.zeros(0) for g in grads])


def exact_gradient(model, group, loss_fn):
    variables = model.group_variables()[group]
    with tf.GradientTape() as tape:
        loss = loss_fn()
    return flat(tape.gradient(loss, variables))


def estimated_gradient(model, group, x):
    """(mean, standard error) of the group's training gradient over CHUNKS independent chunks of x."""
    variables = model.group_variables()[group]
    with tf.GradientTape(persistent=True) as tape:
        losses, _, _ = model.surrogates(x, model.draw(x))
        means = tf.reduce_mean(tf.reshape(losses[group], [CHUNKS, -1]), axis=1)
        parts = [means[r] for r in range(CHUNKS)]
    grads = np.stack([flat(tape.gradient(part, variables)) for part in parts])
    return grads.mean(0), grads.std(0, ddof=1) / np.sqrt(CHUNKS)


def replicated(copies):
    return tf.constant(np.tile(X, (copies, 1)))


@BOTH_LATENTS
def test_sigmoid_belief_net_log_probs_match_the_hand_written_formulas(latent):
    model = tiny_sbn(num_samples=4, latent=latent)
    out = model.log_weights(X, 4, seed=tf.constant([1, 2]))
    z = out["z"].numpy()
    assert set(np.unique(z)) <= {0.0, 1.0}
    if latent == "categorical":
        np.testing.assert_array_equal(z.reshape(*z.shape[:-1], VARIABLES, CLASSES).sum(-1), 1.0)
    codes = np.argmax(np.all(z[..., None, :] == every_z(model).numpy(), axis=-1), axis=-1)  # row of every_z
    table = exact_log_joint(model, tf.constant(X)).numpy()
    log_q = exact_log_q(model, tf.constant(X)).numpy()
    cols = np.arange(len(X))
    np.testing.assert_allclose(out["log_pz"] + out["log_px_z"], table[codes, cols], atol=1e-4)
    np.testing.assert_allclose(out["log_qz"], log_q[codes, cols], atol=1e-4)


def test_bernoulli_noise_has_the_right_frequencies():
    logits = tf.constant([-100.0, -20.0, -3.0, -0.5, 0.0, 2.0, 8.0, 20.0, 100.0])
    z = discrete.sample(discrete.independent_bernoulli(logits), 40000, tf.constant([3, 4]))
    p = tf.sigmoid(logits).numpy()
    stderr = np.sqrt(p * (1 - p) / 40000)
    np.testing.assert_array_less(np.abs(z.numpy().mean(0) - p), 4 * stderr + 1e-6)
    # The draw is "logit(Phi(eps)) < logit"; the sampler tests it without transforming the noise.
    eps = tf.random.stateless_normal([40000, logits.shape[0]], seed=[7, 8])
    rule = discrete.logistic_of_noise(eps) < logits
    assert np.mean(discrete.bernoulli_from_noise(logits, eps).numpy() != rule.numpy()) < 1e-4
    onehot = discrete.sample(discrete.one_hot_categorical(tf.constant([0.0, 1.0, -1.0])), 40000, tf.constant([5, 6]))
    probs = tf.nn.softmax([0.0, 1.0, -1.0]).numpy()
    np.testing.assert_array_less(np.abs(onehot.numpy().mean(0) - probs), 4 * np.sqrt(probs * (1 - probs) / 40000))


def _bias_in_stderrs(model, group, x, exact):
    mean, stderr = estimated_gradient(model, group, x)
    return np.abs(mean - exact) / stderr, np.linalg.norm(mean - exact)


def _assert_bias_shrinks_like_one_over_k(model, group, exact):
    """Self-normalised importance sampling's bias is c/K + O(1/K^2) (Bornschein & Bengio 2015;
    Owen 2013, ch. 9): measurable at K=2, ~10x smaller at K=20 and again at K=500, and the
    Richardson extrapolation 2 g(2K) - g(K), which cancels the c/K term, is within noise of the
    exact gradient. (Whether g(500) itself is within noise depends on c and the sample size: the
    categorical SBN's poorer q leaves a c/500 that 2,000 examples resolve.)"""
    errors, estimates = {}, {}
    for k, copies in ((2, 4000), (20, 2000), (250, 500), (500, 500)):
        model.num_samples = k
        estimates[k] = estimated_gradient(model, group, replicated(copies))
        errors[k] = np.linalg.norm(estimates[k][0] - exact)
    assert (np.abs(estimates[2][0] - exact) / estimates[2][1]).max() > 6  # biased, measurably, at small K
    assert errors[20] < errors[2] / 4 and errors[500] < errors[20] / 4, errors
    (g1, s1), (g2, s2) = estimates[250], estimates[500]
    z_scores = np.abs(2 * g2 - g1 - exact) / np.sqrt(4 * s2 ** 2 + s1 ** 2)
    assert z_scores.max() < 4.5, z_scores


@BOTH_LATENTS
def test_wake_theta_tends_to_the_exact_log_likelihood_gradient_as_k_grows(latent):
    model = tiny_sbn(latent=latent)
    exact = exact_gradient(model, "p", lambda: -tf.reduce_mean(tf.reduce_logsumexp(exact_log_joint(model, X), 0)))
    _assert_bias_shrinks_like_one_over_k(model, "p", exact)


@BOTH_LATENTS
def test_wake_phi_tends_to_the_gradient_of_the_inclusive_kl(latent):
    model = tiny_sbn(phi_update="wake", latent=latent)

    def kl():  # mean_b KL(p(z|x_b) || q(z|x_b)), its phi-gradient by enumeration
        post = tf.stop_gradient(tf.nn.softmax(exact_log_joint(model, X), axis=0))
        return -tf.reduce_mean(tf.reduce_sum(post * exact_log_q(model, X), axis=0))

    _assert_bias_shrinks_like_one_over_k(model, "q", exact_gradient(model, "q", kl))


@BOTH_LATENTS
@pytest.mark.parametrize("k", [1, 5])
def test_sleep_phi_is_unbiased_for_the_expected_inclusive_kl_under_the_model(k, latent):
    model = tiny_sbn(phi_update="sleep", num_samples=k, latent=latent)
    every_x = discrete.enumerate_bernoulli(PIXELS)  # all 16 images

    def expected_kl():  # E_p(x) KL(p(z|x) || q(z|x)) = -sum_{z,x} p(z, x) log q(z|x) + const
        joint = tf.stop_gradient(tf.exp(exact_log_joint(model, every_x)))
        return -tf.reduce_sum(joint * exact_log_q(model, every_x))

    exact = exact_gradient(model, "q", expected_kl)
    z_scores, _ = _bias_in_stderrs(model, "q", tf.zeros([CHUNKS * 1000, PIXELS]), exact)
    assert z_scores.max() < 4.5, z_scores


@pytest.mark.parametrize("insomnia", [0.3, 0.8])
def test_mixed_phi_update_is_the_insomnia_weighted_sum_of_wake_and_sleep_gradients(insomnia):
    # phi_update="both": insomnia * wake-phi (on data) + (1 - insomnia) * sleep-phi (on dreams), as
    # Pyro's `insomnia` (1 = pure wake); at K = 500 wake-phi's bias is within noise (test above).
    model = tiny_sbn(phi_update="both", insomnia=insomnia, num_samples=500)
    every_x = discrete.enumerate_bernoulli(PIXELS)

    def mixture():
        post = tf.stop_gradient(tf.nn.softmax(exact_log_joint(model, X), axis=0))
        wake = -tf.reduce_mean(tf.reduce_sum(post * exact_log_q(model, X), axis=0))
        sleep = -tf.reduce_sum(tf.stop_gradient(tf.exp(exact_log_joint(model, every_x))) * exact_log_q(model, every_x))
        return insomnia * wake + (1.0 - insomnia) * sleep

    exact = exact_gradient(model, "q", mixture)
    z_scores, _ = _bias_in_stderrs(model, "q", replicated(500), exact)
    assert z_scores.max() < 4.5, z_scores
    # Not either pure update: the swapped weighting is many standard errors away.
    model_swapped = tiny_sbn(phi_update="both", insomnia=1.0 - insomnia, num_samples=500)
    swapped, stderr = estimated_gradient(model_swapped, "q", replicated(500))
    assert (np.abs(swapped - exact) / stderr).max() > 6


@BOTH_LATENTS
def test_k1_wake_phi_gradient_has_mean_zero(latent):
    # With one particle the weight is 1 and the estimator is -grad log q(z|x), z ~ q: its mean is 0
    # (the score function's), so RWS with K = 1 and wake-phi does not train q at all.
    model = tiny_sbn(phi_update="wake", num_samples=1, latent=latent)
    mean, stderr = estimated_gradient(model, "q", replicated(4000))
    assert (np.abs(mean) / stderr).max() < 4.5


@pytest.mark.parametrize("latent", ["bernoulli", "categorical", "gaussian"])
def test_k1_sleep_rws_is_wake_sleep(latent):
    # Bornschein & Bengio (2015): wake-sleep is RWS with one particle and the sleep-phase q update.
    kwargs = dict(input_shape=(8, 8, 1), latent=latent, latent_dim=3, hidden_units=(16,), seed=3, num_samples=1)
    x = tf.constant((np.random.default_rng(0).uniform(size=(6, 8, 8, 1)) < 0.5).astype(np.float32))
    grads = []
    for cls, extra in ((models.RWS, {"phi_update": "sleep"}), (models.WakeSleep, {})):
        keras.utils.set_random_seed(0)
        model = cls(**kwargs, **extra)
        g, _, _ = model.compute_gradients(x)
        grads.append({k: flat(v) for k, v in g.items()})
    for group in ("p", "q"):
        np.testing.assert_allclose(grads[0][group], grads[1][group], rtol=1e-5, atol=1e-6)


@BOTH_LATENTS
def test_iwae_bound_of_the_sbn_rises_to_the_exact_log_likelihood(latent):
    model = tiny_sbn(latent=latent)
    exact = tf.reduce_logsumexp(exact_log_joint(model, X), 0).numpy()
    x = replicated(2000)
    means = []
    for k in (1, 10, 200):
        bounds = model.log_likelihood_bound(x, k, seed=tf.constant([k, 0])).numpy().reshape(-1, len(X))
        means.append(bounds.mean(0))
        stderr = bounds.std(0, ddof=1) / np.sqrt(len(bounds))
        assert np.all(means[-1] < exact + 4 * stderr + 1e-6)
    assert np.all(means[0] < means[1]) and np.all(means[1] < means[2])
    np.testing.assert_allclose(means[-1], exact, atol=0.05)


def test_estimators_reduce_to_their_definitions():
    log_w = tf.constant([[0.0, -1.0], [-2.0, 0.5], [1.0, -0.3]])
    w = tf.nn.softmax(log_w, axis=0)
    values = tf.constant([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    np.testing.assert_allclose(estimators.wake_theta_surrogate(log_w, values), -tf.reduce_sum(w * values, 0), rtol=1e-6)
    np.testing.assert_allclose(estimators.wake_sleep_theta_surrogate(values), -tf.reduce_mean(values, 0), rtol=1e-6)
    np.testing.assert_allclose(estimators.rws_dreg_surrogate(log_w), -tf.reduce_sum((w - w * w) * log_w, 0),
                               rtol=1e-5)
    np.testing.assert_allclose(estimators.prior_sampling_bound(values), estimators.iwae_bound(values), rtol=1e-6)
    np.testing.assert_allclose(estimators.exact_log_likelihood(values), tf.reduce_logsumexp(values, 0), rtol=1e-6)


def test_two_layer_sbn_scores_and_bound_match_enumeration():
    model = tiny_sbn(top_latent_dim=2, num_samples=4)
    z_all = discrete.enumerate_bernoulli(LATENTS + 2)  # [32, 5]: z1 (3 units), then z2 (2 units)
    z1, z2 = z_all[:, :LATENTS], z_all[:, LATENTS:]
    b2, w2, b1 = model.top_prior.logits, model.conditional_prior.kernel, model.prior_layer.logits
    _, w, c, v, d = sbn_parts(model)
    l1 = z2 @ w2 + b1
    log_pz = (tf.reduce_sum(z2 * b2 - tf.math.softplus(b2), -1) + tf.reduce_sum(z1 * l1 - tf.math.softplus(l1), -1))
    lx = z1 @ w + c
    log_joint = log_pz[:, None] + tf.transpose(X @ tf.transpose(lx) - tf.reduce_sum(tf.math.softplus(lx), -1))
    exact = tf.reduce_logsumexp(log_joint, 0).numpy()
    # The model's scores at every configuration.
    z_grid = tf.tile(z_all[:, None], [1, len(X), 1])
    log_prior, log_lik = model.log_prior_and_likelihood(z_grid, X)
    np.testing.assert_allclose(log_prior + log_lik, log_joint, atol=1e-4)
    lq1 = tf.constant(X) @ v + d
    lq2 = z1 @ model.top_encoder.kernel + model.top_encoder.bias
    log_q = (tf.reduce_sum(z1[:, None] * lq1 - tf.math.softplus(lq1), -1)
             + tf.reduce_sum(z2 * lq2 - tf.math.softplus(lq2), -1)[:, None])
    np.testing.assert_allclose(model.posterior_log_prob(X, z_grid), log_q, atol=1e-4)
    np.testing.assert_allclose(np.exp(log_q.numpy()).sum(0), 1.0, rtol=1e-5)  # q(z1, z2|x) normalised
    # IWAE bounds with K samples from the two-layer q rise to the exact log p(x).
    x = replicated(1000)
    means = [model.log_likelihood_bound(x, k, seed=tf.constant([k, 3])).numpy().reshape(-1, len(X)).mean(0)
             for k in (1, 10, 300)]
    assert np.all(means[0] < means[1]) and np.all(means[1] < means[2]) and np.all(means[2] < exact + 0.01)
    np.testing.assert_allclose(means[2], exact, atol=0.05)
