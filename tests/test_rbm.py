"""RBMs against exact answers on models small enough to enumerate (Bachman & Precup 2015 §5.4;
Salakhutdinov & Murray 2008): log Z, the log-likelihood gradient, AIS and reverse AIS, CD-k's
bias, the Eq. 45 correction, PCD's chains (kept across steps, saved, restored after a kill), the CLI."""
import itertools
import json
import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdgm import distributions as dists
from tfdgm import evaluation
from tfdgm.distributions import discrete
from tfdgm.models import RBM
from tests.harness import binary_images, fixed_replica_noise, noise_table, table_gaussian_sample, tiny_model
from tests.test_distribute import _train, mirrored  # noqa: F401  (a fixture)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def random_rbm(num_visible, num_hidden, scale=1.0, seed=0, **kwargs):
    """An RBM with N(0, scale^2) weights and biases: far from the base rate, slowly mixing."""
    model = RBM(input_shape=(num_visible,), num_hidden=num_hidden, seed=seed, **kwargs)
    rng = np.random.default_rng(seed)
    model.set_parameters(rng.normal(0, scale, (num_visible, num_hidden)), rng.normal(0, scale, num_visible),
                         rng.normal(0, scale, num_hidden))
    return model


def brute_force_log_z(model):
    """log sum_{v, h} exp(-E(v, h)) over every joint state."""
    W, b, c = (np.asarray(t, np.float64) for t in (model.W, model.b_v, model.b_h))
    v = np.array(list(itertools.product([0, 1], repeat=model.num_visible)), np.float64)
    h = np.array(list(itertools.product([0, 1], repeat=model.num_hidden)), np.float64)
    neg_energy = v @ W @ h.T + (v @ b)[:, None] + (h @ c)[None]
    return np.logaddexp.reduce(neg_energy.reshape(-1))


def exact_gradient(model, x):
    """Gradient of the mean -log p(x) over x in (W, b_v, b_h), through the enumerated log Z."""
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(model.exact_log_likelihood(x))
    return [g.numpy() for g in tape.gradient(loss, [model.W, model.b_v, model.b_h])]


def flat(grads):
    return np.concatenate([np.ravel(g) for g in grads])


@pytest.mark.parametrize("num_visible, num_hidden", [(6, 9), (9, 6)], ids=["enumerate-visible", "enumerate-hidden"])
def test_exact_log_partition_by_either_layer_matches_the_joint_sum(num_visible, num_hidden):
    model = random_rbm(num_visible, num_hidden)
    np.testing.assert_allclose(float(model.exact_log_partition()), brute_force_log_z(model), rtol=1e-5)
    # Exact draws follow p(v): their empirical frequencies match exp(-F(v) - log Z).
    states = np.array(list(itertools.product([0, 1], repeat=num_visible)), np.float32)
    p = np.exp(model.exact_log_likelihood(states).numpy())
    np.testing.assert_allclose(p.sum(), 1.0, rtol=1e-4)
    draws = model.exact_samples(20000, seed=3).numpy()
    codes = draws @ (2 ** np.arange(num_visible)[::-1])
    freq = np.bincount(codes.astype(int), minlength=2 ** num_visible) / len(draws)
    se = np.sqrt(p * (1 - p) / len(draws))
    assert np.all(np.abs(freq - p) < 5 * se + 1e-3)


def test_exact_gradient_is_data_minus_model_statistics():
    model = random_rbm(7, 5)
    x = binary_images(40, shape=(7,))
    gW, gb, gc = exact_gradient(model, x)
    W, b, c = (t.numpy().astype(np.float64) for t in (model.W, model.b_v, model.b_h))
    v = np.array(list(itertools.product([0, 1], repeat=7)), np.float64)
    p = np.exp(model.exact_log_likelihood(v.astype(np.float32)).numpy().astype(np.float64))
    sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    h_data, h_model = sig(x @ W + c), sig(v @ W + c)
    # d(-log p)/dW = E_p[v E[h|v]'] - mean_x x E[h|x]' (Hinton's guide Eq. 1 with h summed out).
    np.testing.assert_allclose(gW, (v * p[:, None]).T @ h_model - x.T @ h_data / len(x), atol=1e-5)
    np.testing.assert_allclose(gb, p @ v - x.mean(0), atol=1e-5)
    np.testing.assert_allclose(gc, p @ h_model - h_data.mean(0), atol=1e-5)


def test_ais_log_z_is_within_three_standard_errors_and_reverse_ais_brackets_it():
    model = random_rbm(12, 10)
    exact = float(model.exact_log_partition())
    data = model.exact_samples(500, seed=1).numpy()
    good = evaluation.ais_log_partition(model, data, num_steps=500, num_chains=200, seed=0)
    assert good.reverse_from == "exact"
    assert abs(good.log_z - exact) < 3 * good.log_z_stderr, (good.log_z, exact, good.log_z_stderr)
    assert abs(good.log_z_reverse - exact) < 3 * good.log_z_reverse_stderr
    # Each chain's log weight is a stochastic bound (Jensen: E log w <= log E w): forward chains'
    # log Z_0 + log w lie below log Z on average, reverse chains' log Z_0 - log w above it. A short
    # path from a poor base (the model's own visible biases) makes the gaps large.
    hard = random_rbm(12, 10, scale=2.0)
    exact = float(hard.exact_log_partition())
    short = evaluation.ais_log_partition(hard, None, num_steps=3, num_chains=2000, seed=0)
    log_z0 = short.log_z - (np.logaddexp.reduce(short.log_weights) - np.log(len(short.log_weights)))
    forward, reverse = log_z0 + short.log_weights, log_z0 - short.reverse_log_weights
    assert forward.mean() < exact - 3 * forward.std() / np.sqrt(len(forward)), (forward.mean(), exact)
    assert reverse.mean() > exact + 3 * reverse.std() / np.sqrt(len(reverse)), (reverse.mean(), exact)


def _mean_gradient(model, x, draws, seed=0):
    """Mean and standard error over `draws` of the model's own training gradient on batch x."""
    model.seed_generator.state.assign([seed, 0])
    step = tf.function(lambda x: model.compute_gradients(x)[0]["rbm"])
    grads = np.stack([flat([g.numpy() for g in step(x)]) for _ in range(draws)])
    return grads.mean(0), grads.std(0, ddof=1) / np.sqrt(draws)


def test_cd_k_gradient_approaches_the_exact_gradient_as_k_grows():
    x = np.tile(binary_images(64, shape=(8,), seed=2), (16, 1))  # 1,024 rows: less noise per draw
    distances = {}
    for k in (1, 2, 30):
        model = random_rbm(8, 6, scale=2.0, cd_steps=k)
        exact = flat(exact_gradient(model, x))
        mean, se = _mean_gradient(model, x, draws=8)
        # ||bias|| and the size of the Monte Carlo noise in it (the norm of the standard errors).
        distances[k] = (np.linalg.norm(mean - exact), np.linalg.norm(se))
    (d1, n1), (d2, n2), (d30, n30) = distances[1], distances[2], distances[30]
    assert d1 > 3 * n1, distances  # CD-1 is biased beyond its noise
    assert d1 > d2 + 3 * max(n1, n2) and d2 > d30 + 3 * max(n2, n30), distances
    assert d30 < 3 * n30 + 0.1 * d1, distances  # k = 30: no bias left beyond noise (or 10% of CD-1's)


def exact_kl_gradient(model, x0_states, x0_probs):
    """Exact grad_w KL(q(tau) || p(tau)) of Bachman & Precup Eq. 24 for k = 1, tau = (x0, z0, x1):
    q = D(x0) q(z0|x0) q(x1|z0), p = q(x1) p(z0|x1) p(x0|z0), every trajectory enumerated
    (x0 over the data's support, z0 and x1 over all states)."""
    v = discrete.enumerate_bernoulli(model.num_visible)
    h = discrete.enumerate_bernoulli(model.num_hidden)

    def log_cond(logits, values):  # [A, ...] logits, [C, ...] values -> [A, C]
        return discrete.independent_bernoulli(logits[:, None]).log_prob(values[None])

    with tf.GradientTape() as tape:
        log_q = (tf.math.log(x0_probs)[:, None, None] + log_cond(model.hidden_logits(x0_states), h)[:, :, None]
                 + log_cond(model.visible_logits(h), v)[None])  # [x0, z0, x1]
        log_q_x1 = tf.reduce_logsumexp(log_q, axis=(0, 1))
        log_p = (log_q_x1[None, None, :] + tf.transpose(log_cond(model.hidden_logits(v), h))[None]
                 + tf.transpose(log_cond(model.visible_logits(h), x0_states))[:, :, None])
        kl = tf.reduce_sum(tf.exp(log_q) * (log_q - log_p))
    return flat([g.numpy() for g in tape.gradient(kl, [model.W, model.b_v, model.b_h])])


def test_cd_correction_gives_the_exact_gradient_of_the_trajectory_kl():
    """With Eq. 45's term CD-1's gradient is the exact gradient of KL(q(tau) || p(tau)), the
    objective CD approximately descends (Bachman & Precup §5.4); plain CD-1 misses it."""
    num_visible, num_hidden = 4, 3
    rng = np.random.default_rng(5)
    support = discrete.enumerate_bernoulli(num_visible).numpy()
    x = support[rng.choice(len(support), size=4000, p=rng.dirichlet(np.full(len(support), 0.5)))]
    codes = (x @ (2 ** np.arange(num_visible))).astype(int)
    counts = np.bincount(codes, minlength=len(support))
    used = np.flatnonzero(counts)
    # enumerate_bernoulli's bit i is code bit i: support[c] has code c.
    x0_states, x0_probs = tf.constant(support[used]), tf.constant(counts[used] / len(x), tf.float32)
    results = {}
    for corrected in (False, True):
        model = random_rbm(num_visible, num_hidden, scale=1.5, seed=3, cd_correction=corrected)
        target = exact_kl_gradient(model, x0_states, x0_probs)
        mean, se = _mean_gradient(model, x, draws=12)
        results[corrected] = (np.linalg.norm(mean - target), np.linalg.norm(se), np.linalg.norm(target))
    (plain, plain_noise, size), (fixed, fixed_noise, _) = results[False], results[True]
    assert plain > 5 * plain_noise, results  # the dropped term matters here
    assert fixed < 3 * fixed_noise + 0.05 * size, results
    assert fixed < plain / 3, results


def test_pcd_continues_its_chains_across_steps(monkeypatch):
    table = noise_table()
    monkeypatch.setattr(dists, "gaussian_sample", table_gaussian_sample(table))
    model = tiny_model("rbm", persistent=True, num_chains=12, num_hidden=10)
    model.compile(optimizer=keras.optimizers.SGD(0.1), steps_per_execution=1)
    x = binary_images(8)
    width = model.cd_steps * (model.num_hidden + model.num_visible) + model.num_visible
    eps = tf.reshape(table[: 8 * width], [8, width])[:, : model.num_hidden + model.num_visible]
    chains = model.chains.numpy()
    assert not chains.any()  # they start at 0
    for _ in range(3):
        before_weights = [w.numpy() for w in (model.W, model.b_v, model.b_h)]
        expected = model.gibbs_step(tf.constant(chains[:8]), eps)[1].numpy()  # from the chains, not the data
        from_data = model.gibbs_step(tf.reshape(x, [8, -1]), eps)[1].numpy()
        model.fit(x, batch_size=8, epochs=1, verbose=0, shuffle=False)
        assert not all(np.array_equal(a, b.numpy()) for a, b in zip(before_weights, (model.W, model.b_v, model.b_h)))
        new = model.chains.numpy()
        np.testing.assert_array_equal(new[:8], expected)
        np.testing.assert_array_equal(new[8:], chains[8:])  # rows no example used are kept
        chains = new
    assert not np.array_equal(expected, from_data)


def test_pcd_chains_are_saved_and_loaded_with_the_model(tmp_path):
    model = tiny_model("rbm", persistent=True, num_chains=8, num_hidden=10)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.5))
    model.fit(binary_images(16), batch_size=8, epochs=2, verbose=0)
    assert model.chains.numpy().any()
    path = str(tmp_path / "rbm.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(loaded.chains.numpy(), model.chains.numpy())
    assert loaded.persistent and loaded.num_chains == 8


def test_pcd_mirrored_training_matches_one_device(mirrored, monkeypatch):
    """Two replicas each advance the chain rows of their slice of the global batch (an uneven
    last batch too), then gather them: the chains and weights are those of one device."""
    monkeypatch.setattr(dists, "gaussian_sample", fixed_replica_noise())
    kwargs = dict(persistent=True, num_chains=8, num_hidden=16)
    single, single_history = _train("rbm", **kwargs)
    replicated, replicated_history = _train("rbm", mirrored, **kwargs)
    assert single.chains.numpy().any()
    for a, b in zip(single.weights, replicated.weights):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-6, err_msg=a.path)
    for key in single_history:
        np.testing.assert_allclose(replicated_history[key], single_history[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_savedmodel_exports_the_free_energy(tmp_path):
    model = tiny_model("rbm", num_hidden=10)
    model.export(str(tmp_path / "rbm"), verbose=False)
    restored = tf.saved_model.load(str(tmp_path / "rbm"))
    x = binary_images(4)
    np.testing.assert_allclose(restored.free_energy(tf.constant(x)), model.free_energy(x), rtol=1e-6)


def test_bad_settings_and_data_are_refused():
    with pytest.raises(ValueError, match="cd_correction"):
        RBM(input_shape=(4,), persistent=True, cd_correction=True)
    with pytest.raises(ValueError, match="cd_steps"):
        RBM(input_shape=(4,), cd_steps=0)
    model = tiny_model("rbm")
    model.compile(optimizer="sgd")
    grey = binary_images(8) * 0.5  # in [0, 1] but not binary
    with pytest.raises(ValueError, match="binary"):
        model.fit(grey, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="binary"):
        evaluation.free_energy_nll(model, grey, evaluation.ais_log_partition(
            model, num_steps=2, num_chains=2, reverse=False))
    with pytest.raises(ValueError, match="enumerate"):
        RBM(input_shape=(28, 28, 1), num_hidden=30).exact_log_partition()
    with pytest.raises(ValueError, match="has_free_energy"):
        evaluation.ais_log_partition(tiny_model("vae"))


def test_sample_is_deterministic_per_seed_and_follows_the_model():
    model = random_rbm(6, 4, scale=1.0, gibbs_steps=50)
    a, b = model.sample(4000, seed=1).numpy(), model.sample(4000, seed=1).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, model.sample(4000, seed=2).numpy())
    # After 50 Gibbs steps the visible means average to the model's marginals E_p[v].
    states = discrete.enumerate_bernoulli(6)
    p = np.exp(model.exact_log_likelihood(states).numpy())
    np.testing.assert_allclose(a.mean(0), p @ states.numpy(), atol=0.03)


# ---------------------------------------------------------------------------- CLI and resume
TINY_RUN = ["--config", os.path.join(ROOT, "configs", "rbm_pcd1_h500_fashion_mnist.py"),
            "--config.model.num_hidden=16", "--config.model.num_chains=50", "--config.model.gibbs_steps=5",
            "--config.data.batch_size=50", "--config.training.epochs=2", "--config.training.max_steps_per_epoch=4",
            "--config.training.momentum=0.5",  # SGD momentum slots: more optimizer state to restore
            "--config.training.steps_per_execution=1", "--config.training.checkpoint_every_n_steps=2",
            "--config.eval.num_examples=50", "--config.eval.num_image_samples=4"]


@pytest.mark.slow
def test_cli_trains_an_rbm_and_evaluates_it_by_ais(tmp_path):
    from tests.test_cli import _run_cli

    workdir = str(tmp_path / "rbm")
    assert _run_cli("train", "--workdir", workdir, *TINY_RUN) == 0
    metrics = json.load(open(os.path.join(workdir, "metrics.json")))
    assert metrics["steps"] == 8 and "test_nll" not in metrics  # no IWAE bound for an RBM
    assert {"loss", "pseudo_likelihood", "recon_error", "free_energy"} <= set(metrics["history"][-1])
    assert _run_cli("evaluate", "--workdir", workdir, "--method=ais", "--ais_steps=20", "--num_chains=10",
                    "--num_examples=50", "--schedule=linear") == 0
    after = json.load(open(os.path.join(workdir, "metrics.json")))
    ais = after["ais"]
    assert ais == after["evaluations"][-1] and ais["kernel"] == "gibbs" and ais["num_examples"] == 50
    assert after["test_nll_ais"] == ais["nll"] > 0 and ais["nll_stderr"] > 0 and ais["log_z_stderr"] > 0
    assert ais["log_z_reverse"] is not None and np.isfinite(ais["nll_reverse"])
    # The momentum of the config reached the optimizer.
    model = keras.models.load_model(os.path.join(workdir, "model.keras"))
    assert isinstance(model.optimizer, keras.optimizers.SGD) and model.optimizer.momentum == 0.5


def _env(**hooks):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow")
    env.update({k: str(v) for k, v in hooks.items()})
    return env


@pytest.mark.slow
def test_pcd_chains_survive_a_kill_and_resume_bit_for_bit(tmp_path):
    command = lambda w: [sys.executable, "-m", "tests.cli_hooks", "train", "--workdir", str(w), *TINY_RUN]  # noqa
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    result = subprocess.run(command(reference), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    process = subprocess.Popen(command(killed), cwd=ROOT, env=_env(TFDGM_TEST_PAUSE_AT_STEP=5),
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in process.stdout:
            if line.startswith("PAUSED AT STEP"):
                break
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=60)
    state = np.load(killed / "checkpoints" / "state-4.npz")
    chains = [state[k] for k in state.files if k.startswith("model/") and state[k].shape == (50, 784)]
    assert len(chains) == 1 and chains[0].any()  # the chains are in the training state
    result = subprocess.run(command(killed), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "(step 4)" in result.stdout, result.stderr[-3000:]
    final = [keras.models.load_model(w / "model.keras", compile=False) for w in (reference, killed)]
    for a, b in zip(final[0].weights, final[1].weights):
        np.testing.assert_array_equal(a, b, err_msg=a.path)
    assert final[1].chains.numpy().any()
