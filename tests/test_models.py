"""The shared harness: every registered model builds, trains, round-trips and exports.

A new model registered with `@register(name)` is covered here without a test file of its own.
"""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdgm import distributions as dists
from tests.harness import ALL_MODELS, accepts, binary_images, noise_table, table_gaussian_sample, tiny_model


@pytest.fixture(params=ALL_MODELS)
def name(request):
    return request.param


# Graph mode unless a check is about XLA: test_xla_and_graph_mode_train_identically shows XLA trains
# like graph mode for every model, and an XLA compile per fit would dominate these tiny models' time.
def _fit(model, x, jit_compile=False, epochs=2, optimizer=None):
    model.compile(optimizer=optimizer or keras.optimizers.Adam(1e-2), jit_compile=jit_compile)
    return model.fit(x, batch_size=8, epochs=epochs, verbose=0, shuffle=False)


def test_fit_reports_the_common_metrics_and_improves(name):
    model = tiny_model(name)
    x = binary_images(64)
    history = _fit(model, x, epochs=6).history
    assert sorted(history) == sorted(model.metric_names)
    for key in model.metric_names:
        assert np.all(np.isfinite(history[key])), key
    assert history["loss"][-1] < history["loss"][0]
    if {"elbo", "kl", "recon"} <= set(history):  # where the model has an ELBO, it is recon - KL
        assert np.all(np.array(history["kl"]) >= 0)
        np.testing.assert_allclose(np.array(history["elbo"]), np.array(history["recon"]) - np.array(history["kl"]),
                                   rtol=1e-4)


# The two checks that compile every model with XLA (tens of seconds each on 2 cores) run with the
# long checks (`pytest -m slow`, as CI does), which keeps the default run short as models are added.
@pytest.mark.slow
def test_xla_and_graph_mode_train_identically(name, monkeypatch):
    # XLA's RNG kernels draw other numbers than TF's for the same seed, so the noise is fixed
    # here; everything else (losses, gradients, optimizer) must then agree across modes.
    table = noise_table()
    monkeypatch.setattr(dists, "gaussian_sample", table_gaussian_sample(table))
    # TFP's samplers too (HMC momenta and Metropolis draws, in models that run MCMC).
    from tensorflow_probability.python.internal import samplers

    def table_draws(shape, offset):
        return tf.reshape(tf.roll(table, offset, axis=0)[: tf.reduce_prod(shape)], shape)

    def fixed_normal(shape, mean=0.0, stddev=1.0, dtype=tf.float32, seed=None, name=None):
        return tf.cast(mean + stddev * table_draws(shape, 1), dtype)

    def fixed_uniform(shape, minval=0.0, maxval=None, dtype=tf.float32, seed=None, name=None):
        u = 0.5 * tf.math.erfc(-table_draws(shape, 2) / np.sqrt(2.0))
        return tf.cast(minval + ((1.0 if maxval is None else maxval) - minval) * u, dtype)

    monkeypatch.setattr(samplers, "normal", fixed_normal)
    monkeypatch.setattr(samplers, "uniform", fixed_uniform)
    x = binary_images(16)
    results = []
    for jit in (True, False):
        model = tiny_model(name)
        # SGD, not Adam: Adam's first steps are ~lr*sign(g), which turns float rounding in
        # near-zero gradients into lr-sized differences.
        _fit(model, x, jit_compile=jit, epochs=1, optimizer=keras.optimizers.SGD(0.1))
        results.append([w.numpy() for w in model.weights])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_config_round_trip(name):
    model = tiny_model(name)
    clone = type(model).from_config(json.loads(json.dumps(model.get_config())))
    assert clone.get_config() == model.get_config()


def test_keras_file_round_trip_is_safe_and_exact(name, tmp_path):
    model = tiny_model(name)
    x = binary_images(16)
    _fit(model, x, epochs=1)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert type(loaded) is type(model)
    for a, b in zip(loaded.weights, model.weights):
        np.testing.assert_array_equal(a, b, err_msg=b.path)
    seed = tf.constant([1, 2])
    np.testing.assert_allclose(loaded.sample(4, seed=seed), model.sample(4, seed=seed), atol=1e-6)
    if model.has_encoder:
        np.testing.assert_allclose(loaded.reconstruct(x), model.reconstruct(x), atol=1e-6)
    if model.has_bound:
        np.testing.assert_allclose(
            loaded.log_likelihood_bound(x, 5, seed=seed), model.log_likelihood_bound(x, 5, seed=seed), atol=1e-4)
    # Training can resume from the file: the optimizer state came back with it.
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations) > 0
    loaded.fit(x, batch_size=8, epochs=1, verbose=0)


def test_savedmodel_export_needs_only_tensorflow(name, tmp_path):
    model = tiny_model(name)
    x = binary_images(4)
    path = str(tmp_path / "export")
    model.export(path, verbose=False)
    restored = tf.saved_model.load(path)
    seed = tf.constant([3, 4], tf.int32)
    images = restored.sample(num_samples=tf.constant(5), seed=seed)
    assert images.shape == (5, 8, 8, 1)
    np.testing.assert_array_equal(images, restored.sample(num_samples=tf.constant(5), seed=seed))
    np.testing.assert_allclose(images, model.sample(5, seed=seed), atol=1e-6)
    assert hasattr(restored, "encode") == model.has_encoder
    assert hasattr(restored, "log_likelihood_bound") == model.has_bound
    if model.has_encoder:
        np.testing.assert_allclose(restored.encode(x), model.encode(x), atol=1e-6)
        np.testing.assert_allclose(restored.reconstruct(x), model.reconstruct(x), atol=1e-6)
    if model.has_bound:
        bound = restored.log_likelihood_bound(x=tf.constant(x), num_samples=tf.constant(7), seed=seed)
        np.testing.assert_allclose(bound, model.log_likelihood_bound(x, 7, seed=seed), atol=1e-4)


def test_same_seed_same_training(name):
    x = binary_images(16)
    weights = []
    for _ in range(2):
        model = tiny_model(name)
        _fit(model, x, epochs=1)
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


def test_bad_input_is_refused_before_training(name):
    model = tiny_model(name)
    if model.has_bound:  # a bound of data the likelihood cannot model is an error, not a NaN
        with pytest.raises(ValueError, match=r"\[0, 1\]|binary|binar"):
            model.log_likelihood_bound(binary_images(2) * 3.0, 3)
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match=r"\[0, 1\]|binary|binar"):
        model.fit(binary_images(8) * 3.0, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="shape"):
        model.fit(binary_images(8, shape=(6, 6, 1)), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="NaN"):
        bad = binary_images(8)
        bad[2, 0, 0, 0] = np.nan
        model.fit(bad, epochs=1, verbose=0)


def test_constructor_typos_and_bad_values_are_clear(name):
    with pytest.raises((TypeError, ValueError), match="num_sampels"):
        tiny_model(name, num_sampels=5)
    # Arguments a model does not take are not checked here: a typo of them is the case above.
    if accepts(name, "num_samples"):
        with pytest.raises(ValueError, match="num_samples"):
            tiny_model(name, num_samples=0)
    if accepts(name, "architecture"):
        with pytest.raises(ValueError, match="architecture"):
            tiny_model(name, architecture="transformer")


@pytest.mark.slow
def test_conv_architecture_and_bfloat16_precision_train(name):
    if not accepts(name, "architecture", "precision"):
        pytest.skip(f"{name} declares no architecture or precision argument (its default_config)")
    model = tiny_model(name, architecture="conv", precision="mixed_bfloat16")
    history = _fit(model, binary_images(16), epochs=1, jit_compile=True).history
    assert np.isfinite(history["loss"][-1])
    if model.has_bound:
        assert model.log_likelihood_bound(binary_images(2), 4).dtype == tf.float32


def test_steps_per_epoch_is_exact_with_several_steps_per_execution():
    model = tiny_model("vae")
    model.compile(optimizer="sgd")  # tfdgm's default: 10 steps per execution
    data = tf.data.Dataset.from_tensor_slices(binary_images(40)).batch(8).repeat()
    model.fit(data, steps_per_epoch=3, epochs=2, verbose=0)
    assert int(model.optimizer.iterations) == 6
    model.fit(tf.data.Dataset.from_tensor_slices(binary_images(40)).batch(8), epochs=1, verbose=0)
    assert int(model.optimizer.iterations) == 11
    assert model.steps_per_execution == 10  # a later full-epoch fit is back to the compiled value


_LOAD_WITH_TENSORFLOW_ONLY = r"""
import json, sys
import numpy as np
import tensorflow as tf
out = {}
for name, path in json.loads(sys.argv[1]).items():
    m = tf.saved_model.load(path)
    x = tf.constant(np.load(sys.argv[2]))
    seed = tf.constant([3, 4], tf.int32)
    out[name + "/sample"] = m.sample(num_samples=tf.constant(5), seed=seed).numpy()
    if hasattr(m, "encode"):
        out[name + "/encode"] = m.encode(x).numpy()
    if hasattr(m, "log_likelihood_bound"):
        out[name + "/bound"] = m.log_likelihood_bound(x=x, num_samples=tf.constant(7), seed=seed).numpy()
np.savez(sys.argv[3], **out)
leaked = sorted(k for k in sys.modules if k.split(".")[0] in ("tfdgm", "tensorflow_probability", "tests"))
print(json.dumps(leaked))
"""


def test_savedmodels_load_in_a_process_that_never_imports_tfdgm_or_tfp(tmp_path):
    import subprocess
    import sys

    x = binary_images(4)
    np.save(tmp_path / "x.npy", x)
    paths, expected = {}, {}
    for name in ALL_MODELS:
        model = tiny_model(name)
        paths[name] = str(tmp_path / name)
        model.export(paths[name], verbose=False)
        seed = tf.constant([3, 4], tf.int32)
        expected[name + "/sample"] = model.sample(5, seed=seed)
        if model.has_encoder:
            expected[name + "/encode"] = model.encode(x)
        if model.has_bound:
            expected[name + "/bound"] = model.log_likelihood_bound(x, 7, seed=seed)
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", _LOAD_WITH_TENSORFLOW_ONLY, json.dumps(paths),
                             str(tmp_path / "x.npy"), str(tmp_path / "out.npz")],
                            cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
    got = np.load(tmp_path / "out.npz")
    assert sorted(got.files) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, atol=1e-5, err_msg=key)
