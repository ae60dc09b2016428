"""Wake-sleep and reweighted wake-sleep against exact answers on a sigmoid belief net small enough
to enumerate (3 Bernoulli latents, 4 binary pixels: 8 values of z, 16 of x).

Every Monte Carlo gradient is the mean of R independent chunk estimates (each over many examples),
so its standard error comes from their spread; tolerances are multiples of it.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdgm import estimators, models
from tfdgm.distributions import discrete

LATENTS, PIXELS, CHUNKS = 3, 4, 20
X = np.array([[1, 0, 1, 1], [0, 0, 1, 0], [1, 1, 1, 0], [0, 1, 0, 1]], np.float32)


def tiny_sbn(cls=models.RWS, seed=0, **kwargs):
    """A one-layer SBN with fixed weights: a peaked posterior and a poor q (so bias is visible)."""
    model = cls(input_shape=(PIXELS,), latent="bernoulli", latent_dim=LATENTS, hidden_units=(), seed=seed,
                **kwargs)
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


def exact_log_joint(model, x):
    """log p(z_m, x_b) [8, B] by hand (not through the model's code)."""
    b, w, c, _, _ = sbn_parts(model)
    z = discrete.enumerate_bernoulli(LATENTS)
    log_pz = tf.reduce_sum(z * b - tf.math.softplus(b), axis=-1)
    logits = z @ w + c  # [8, 4]
    log_px_z = x @ tf.transpose(logits) - tf.reduce_sum(tf.math.softplus(logits), axis=-1)  # [B, 8]
    return log_pz[:, None] + tf.transpose(log_px_z)


def exact_log_q(model, x):
    """log q(z_m|x_b) [8, B] by hand."""
    _, _, _, v, d = sbn_parts(model)
    z = discrete.enumerate_bernoulli(LATENTS)
    logits = tf.constant(x) @ v + d  # [B, 3]
    return tf.reduce_sum(z[:, None] * logits - tf.math.softplus(logits), axis=-1)


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


def test_sigmoid_belief_net_log_probs_match_the_hand_written_formulas():
    model = tiny_sbn(num_samples=4)
    out = model.log_weights(X, 4, seed=tf.constant([1, 2]))
    z = out["z"].numpy()
    assert set(np.unique(z)) <= {0.0, 1.0}
    codes = (z * 2 ** np.arange(LATENTS)).sum(-1).astype(int)  # enumerate_bernoulli's order
    table = exact_log_joint(model, tf.constant(X)).numpy()
    log_q = exact_log_q(model, tf.constant(X)).numpy()
    cols = np.arange(len(X))
    np.testing.assert_allclose(out["log_pz"] + out["log_px_z"], table[codes, cols], atol=1e-4)
    np.testing.assert_allclose(out["log_qz"], log_q[codes, cols], atol=1e-4)


def test_bernoulli_noise_has_the_right_frequencies():
    logits = tf.constant([-3.0, -0.5, 0.0, 2.0, 8.0])
    z = discrete.sample(discrete.independent_bernoulli(logits), 40000, tf.constant([3, 4]))
    p = tf.sigmoid(logits).numpy()
    stderr = np.sqrt(p * (1 - p) / 40000)
    np.testing.assert_array_less(np.abs(z.numpy().mean(0) - p), 4 * stderr + 1e-6)
    onehot = discrete.sample(discrete.one_hot_categorical(tf.constant([0.0, 1.0, -1.0])), 40000, tf.constant([5, 6]))
    probs = tf.nn.softmax([0.0, 1.0, -1.0]).numpy()
    np.testing.assert_array_less(np.abs(onehot.numpy().mean(0) - probs), 4 * np.sqrt(probs * (1 - probs) / 40000))


def _bias_in_stderrs(model, group, x, exact):
    mean, stderr = estimated_gradient(model, group, x)
    return np.abs(mean - exact) / stderr, np.linalg.norm(mean - exact)


def test_wake_theta_tends_to_the_exact_log_likelihood_gradient_as_k_grows():
    model = tiny_sbn()
    exact = exact_gradient(model, "p", lambda: -tf.reduce_mean(tf.reduce_logsumexp(exact_log_joint(model, X), 0)))
    errors = {}
    for k, copies in ((2, 4000), (20, 2000), (500, 500)):
        model.num_samples = k
        z_scores, errors[k] = _bias_in_stderrs(model, "p", replicated(copies), exact)
        if k == 2:  # self-normalised importance sampling is biased, measurably at small K ...
            assert z_scores.max() > 6, z_scores
    # ... and the bias shrinks like 1/K: by about 10x from K=2 to 20, and to within noise at 500.
    assert errors[20] < errors[2] / 4 and errors[500] < errors[20] / 4, errors
    assert z_scores.max() < 4.5, z_scores


def test_wake_phi_tends_to_the_gradient_of_the_inclusive_kl():
    model = tiny_sbn(phi_update="wake")

    def kl():  # mean_b KL(p(z|x_b) || q(z|x_b)), its phi-gradient by enumeration
        post = tf.stop_gradient(tf.nn.softmax(exact_log_joint(model, X), axis=0))
        return -tf.reduce_mean(tf.reduce_sum(post * exact_log_q(model, X), axis=0))

    exact = exact_gradient(model, "q", kl)
    errors = {}
    for k, copies in ((2, 4000), (20, 2000), (500, 500)):
        model.num_samples = k
        z_scores, errors[k] = _bias_in_stderrs(model, "q", replicated(copies), exact)
        if k == 2:
            assert z_scores.max() > 6, z_scores
    assert errors[20] < errors[2] / 4 and errors[500] < errors[20] / 4, errors
    assert z_scores.max() < 4.5, z_scores


@pytest.mark.parametrize("k", [1, 5])
def test_sleep_phi_is_unbiased_for_the_expected_inclusive_kl_under_the_model(k):
    model = tiny_sbn(phi_update="sleep", num_samples=k)
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


def test_k1_wake_phi_gradient_has_mean_zero():
    # With one particle the weight is 1 and the estimator is -grad log q(z|x), z ~ q: its mean is 0
    # (the score function's), so RWS with K = 1 and wake-phi does not train q at all.
    model = tiny_sbn(phi_update="wake", num_samples=1)
    mean, stderr = estimated_gradient(model, "q", replicated(4000))
    assert (np.abs(mean) / stderr).max() < 4.5


@pytest.mark.parametrize("latent", ["bernoulli", "gaussian"])
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


def test_iwae_bound_of_the_sbn_rises_to_the_exact_log_likelihood():
    model = tiny_sbn()
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
