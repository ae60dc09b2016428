"""A run directory that never loses results: resume with a changed config, merged metrics,
checkpoint integrity and fallback, temporary files, one-line errors, the divergence guard, and
data validation on every public path. In-process `tfdgm.experiment.train` runs of 2 steps.
"""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tfdgm import callbacks as cbs
from tfdgm import config as cfg
from tfdgm import data as tfdata
from tfdgm import evaluation
from tfdgm import experiment
from tests.harness import binary_images, tiny_model
from tests.test_cli import _run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VAE = os.path.join(ROOT, "configs", "vae_mlp_fashion_mnist.py")


def _config(epochs=1, **training):
    config = cfg.base_config("vae")
    config.model.hidden_units = (16,)
    config.model.latent_dim = 4
    config.training.update(epochs=epochs, max_steps_per_epoch=2, jit_compile=False, steps_per_execution=1,
                           **training)
    config.eval.update(num_samples=3, num_examples=20, num_image_samples=4, diagnostics_every_n_epochs=0)
    return config


def _read(path):
    with open(path) as f:
        return json.load(f)




@pytest.fixture
def trained(tmp_path):
    """A completed 2-step run (state every step, so state-2 keeps state-1 as its fallback)."""
    workdir = str(tmp_path / "w")
    assert experiment.train(_config(checkpoint_every_n_steps=1), workdir)["status"] == "completed"
    return workdir


# ---------------------------------------------------------------------------- resume with a new config
def test_resume_applies_a_new_learning_rate_and_logs_every_change(trained, capsys):
    capsys.readouterr()
    metrics = experiment.train(_config(epochs=2, checkpoint_every_n_steps=1, learning_rate=1e-4), trained)
    assert metrics["status"] == "completed" and metrics["steps"] == 4
    out = capsys.readouterr().out
    assert "Resuming with changed settings: training.epochs 1 -> 2, training.learning_rate 0.001 -> 0.0001" in out
    state = cbs.TrainingCheckpoint.read(os.path.join(trained, "checkpoints"))
    arrays = np.load(state["path"])
    rates = {k: float(arrays[k]) for k in arrays if k.startswith("optimizer/") and arrays[k].ndim == 0
             and np.issubdtype(arrays[k].dtype, np.floating)}
    assert rates and all(np.isclose(rate, 1e-4) for rate in rates.values()), rates  # every group's optimizer
    assert _read(os.path.join(trained, "config.json"))["training"]["learning_rate"] == 1e-4


def test_resume_refuses_changed_model_and_data_and_keeps_config_json(trained, monkeypatch):
    config_json = open(os.path.join(trained, "config.json")).read()
    other = _config(epochs=2)
    other.model.latent_dim, other.data.batch_size, other.data.seed = 3, 50, 1
    with pytest.raises(experiment.ExperimentError) as error:
        experiment.train(other, trained)
    message = str(error.value)
    assert "\n" not in message and "fresh --workdir" in message
    for field in ("model.latent_dim 4 -> 3", "data.batch_size 100 -> 50", "data.seed 0 -> 1"):
        assert field in message
    # A run that fails after being accepted (here: its data) leaves config.json of the good run alone.
    monkeypatch.setattr(tfdata, "load", lambda *a, **k: (_ for _ in ()).throw(ValueError("no data here")))
    with pytest.raises(ValueError, match="no data here"):
        experiment.train(_config(epochs=2, learning_rate=1e-4), trained)
    assert open(os.path.join(trained, "config.json")).read() == config_json


def test_a_rerun_merges_metrics_and_keeps_earlier_evaluations(trained):
    path = os.path.join(trained, "metrics.json")
    metrics = _read(path)
    metrics.update(ais={"nll": 99.0}, test_nll_ais=99.0, latent_diagnostics={"active_units": 3},
                   evaluations=metrics["evaluations"] + [{"method": "ais", "nll": 99.0}])
    cbs.write_json_atomic(path, metrics)
    rerun = experiment.train(_config(checkpoint_every_n_steps=1), trained)  # already trained: evaluates again
    assert rerun == _read(path) and rerun["status"] == "completed"
    assert rerun["ais"] == {"nll": 99.0} and rerun["test_nll_ais"] == 99.0
    assert rerun["latent_diagnostics"] == {"active_units": 3}
    assert [e.get("method", "iwae") for e in rerun["evaluations"]] == ["iwae", "ais", "iwae"]


def test_a_crash_in_the_final_evaluation_keeps_the_diagnostics_and_says_failed(tmp_path, monkeypatch):
    from tfdgm.experiment import evaluating

    monkeypatch.setattr(evaluating, "evaluate_nll", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("killed")))
    config = _config()
    config.eval.diagnostics_every_n_epochs = 1
    with pytest.raises(RuntimeError, match="killed"):
        experiment.train(config, str(tmp_path))
    metrics = _read(tmp_path / "metrics.json")
    assert metrics["status"] == "failed" and "killed" in metrics["error"]
    assert metrics["latent_diagnostics"]["num_examples"] == 20  # written with the epoch, not only at the end


def test_resuming_a_legacy_checkpoint_without_its_seed_state_warns(trained, capsys):
    import keras

    checkpoints = os.path.join(trained, "checkpoints")
    model = cfg.build_model(_config(), input_shape=(28, 28, 1))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False)
    model.optimizer.build(model.trainable_variables)
    for name in os.listdir(checkpoints):
        os.remove(os.path.join(checkpoints, name))
    model.save(os.path.join(checkpoints, "last.keras"))  # what versions before state.json wrote
    capsys.readouterr()
    assert experiment.train(_config(epochs=2), trained)["status"] == "completed"
    assert "no longer bit-for-bit" in capsys.readouterr().out


# ---------------------------------------------------------------------------- checkpoint files
def test_a_damaged_latest_state_falls_back_to_the_previous_one(trained, capsys):
    checkpoints = os.path.join(trained, "checkpoints")
    assert sorted(os.listdir(checkpoints)) == ["state-1.npz", "state-2.npz", "state.json"]
    with open(os.path.join(checkpoints, "state-2.npz"), "r+b") as f:  # random bytes inside
        f.seek(os.path.getsize(f.name) // 2)
        f.write(np.random.default_rng(0).bytes(64))
    capsys.readouterr()
    metrics = experiment.train(_config(epochs=2, checkpoint_every_n_steps=1), trained)
    out = capsys.readouterr().out
    assert "state-2.npz does not match its recorded sha256" in out
    assert "fell back from the damaged" in out and "state-1.npz (step 1)" in out
    assert metrics["status"] == "completed" and metrics["steps"] == 4
    assert sorted(os.listdir(checkpoints)) == ["state-3.npz", "state-4.npz", "state.json"]


def test_state_json_naming_a_file_outside_checkpoints_is_refused(trained):
    outside = os.path.join(os.path.dirname(trained), "other_model.keras")
    open(outside, "w").write("another run's model")
    state_path = os.path.join(trained, "checkpoints", "state.json")
    state = _read(state_path)
    cbs.write_json_atomic(state_path, dict(state, file="../../other_model.keras"))
    with pytest.raises(experiment.ExperimentError, match="not a state file inside"):
        experiment.train(_config(epochs=2), trained)
    assert os.path.exists(outside)


def test_leftover_temporary_files_are_removed_at_the_next_start(trained):
    dead = 2**22 + 12345  # above the default pid_max: no such process
    leftovers = [os.path.join(trained, "checkpoints", f".tmp-{dead}-state-7.npz"),
                 os.path.join(trained, f".tmp-{dead}-metrics.json")]
    for path in leftovers:
        open(path, "wb").write(b"half a file")
    experiment.train(_config(checkpoint_every_n_steps=1), trained)
    assert not any(os.path.exists(path) for path in leftovers)


@pytest.mark.parametrize("name, command, advice", [
    ("metrics.json", "evaluate", "move it away"),
    ("config.json", "sample", "restore it from a copy"),
    ("checkpoints/state.json", "train", "Remove it to start training afresh"),
])
def test_a_truncated_json_file_is_one_line_with_advice(trained, name, command, advice, capsys):
    path = os.path.join(trained, name)
    text = open(path).read()
    open(path, "w").write(text[: len(text) // 2])
    args = ["--config", VAE] if command == "train" else []
    capsys.readouterr()
    assert _run_cli(command, "--workdir", trained, *args) == 2
    err = capsys.readouterr().err
    assert err.startswith("tfdgm: error: ") and len(err.strip().splitlines()) == 1
    assert name.split("/")[-1] in err and advice in err and "Traceback" not in err


def test_a_truncated_model_keras_is_named_as_damaged(trained, capsys):
    path = os.path.join(trained, "model.keras")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    assert _run_cli("sample", "--workdir", trained, "--num_samples", "4") == 2
    err = capsys.readouterr().err
    assert "model.keras exists but cannot be loaded" in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------------------- one-line errors
@pytest.mark.parametrize("override", [
    "--config.model.latent_dim=0", "--config.model.num_samples=0", "--config.eval.num_image_samples=0",
    "--config.training.adam_epsilon=0", "--config.training.checkpoint_every_n_epochs=-1",
    "--config.training.divergence_factor=0.5",
])
def test_meaningless_config_values_are_refused_up_front(override, tmp_path, capsys):
    workdir = str(tmp_path / "w")
    assert _run_cli("train", "--config", VAE, "--workdir", workdir, override) == 2
    err = capsys.readouterr().err
    field = override[len("--config."):].split("=")[0]
    assert err.startswith(f"tfdgm: error: config.{field}=") and "is out of range: it must be" in err
    assert len(err.strip().splitlines()) == 1 and not os.path.exists(workdir)


def test_data_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    args = ["train", "--config", VAE, "--workdir", str(tmp_path / "w"), "--config.data.name=/no/such/data"]
    assert _run_cli(*args) == 2
    err = capsys.readouterr().err
    assert err.startswith("tfdgm: error: ") and "/no/such/data" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(Exception):
        _run_cli(*args, "--debug")
    monkeypatch.setenv("TFDGM_DEBUG", "1")
    with pytest.raises(Exception):
        _run_cli(*args)


# ---------------------------------------------------------------------------- divergence guard
def test_divergence_guard_stops_a_loss_that_grows_by_orders_of_magnitude():
    model = tiny_model("vae")
    model.compile(optimizer="sgd")
    messages = []
    guard = cbs.DivergenceGuard(factor=1e3, print_fn=messages.append)
    guard.set_model(model)
    guard.on_epoch_begin(0)
    losses = [500.0, 300.0, 2000.0, 4e5]  # of each step; Keras logs their running mean
    for batch, loss in enumerate(losses):
        model.optimizer.iterations.assign(batch + 1)
        guard.on_train_batch_end(batch, {"loss": np.mean(losses[: batch + 1])})
        assert guard.triggered == (loss == 4e5)
    assert model.stop_training and guard.failure["global_step"] == 4
    assert np.isclose(guard.failure["best_loss"], 300.0) and np.isclose(guard.failure["metrics"]["loss"], 4e5)
    assert "optimizer step 4" in messages[-1] and "learning_rate" in messages[-1]


def test_a_learning_rate_of_10_on_the_configs_mlp_stops_as_diverged_at_the_first_execution(tmp_path):
    config = cfg.base_config("vae")  # the Burda MLP of the configs, 10 steps per execution
    config.training.update(learning_rate=10.0, epochs=1, max_steps_per_epoch=20, jit_compile=False)
    config.eval.update(num_samples=2, num_examples=20, diagnostics_every_n_epochs=0)
    metrics = experiment.train(config, str(tmp_path))
    assert metrics["status"] == "diverged" and metrics["failure"]["global_step"] == 10
    assert metrics["failure"]["metrics"]["loss"] > 1e3 * metrics["failure"]["best_loss"]


def test_a_run_diverging_after_a_resume_stops_and_resumes_with_a_smaller_learning_rate(trained):
    # A tiny model saturates near 25x its initial loss; the MLP of the configs reaches 1e5x (2e8 nats).
    metrics = experiment.train(_config(epochs=4, checkpoint_every_n_steps=0, learning_rate=10.0,
                                       divergence_factor=10.0), trained)
    assert metrics["status"] == "diverged", metrics.get("failure")
    assert metrics["failure"]["global_step"] > 2 and "best_loss" in metrics["failure"]
    assert metrics["last_good_step"] == 2 and os.path.exists(os.path.join(trained, "model.keras"))  # the old one
    metrics = experiment.train(_config(epochs=2, checkpoint_every_n_steps=0, learning_rate=1e-3), trained)
    assert metrics["status"] == "completed" and metrics["steps"] == 4 and "failure" not in metrics


# ---------------------------------------------------------------------------- data validation
def test_every_public_data_path_validates_its_data():
    model = tiny_model("vae")
    model.compile(optimizer="adam", jit_compile=False)
    bad = binary_images(16) * 255.0  # 0..255 intensities for a Bernoulli likelihood
    with pytest.raises(ValueError, match=r"\[0, 1\]|binary"):
        model.fit(tf.constant(bad), batch_size=8, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="first batch"):
        model.fit(tf.data.Dataset.from_tensor_slices(bad).batch(8), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="empty"):
        model.fit(tf.data.Dataset.from_tensor_slices(bad).batch(8).filter(lambda x: False), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="empty"):
        model.fit(tf.data.Dataset.from_tensor_slices(bad).take(0).batch(8), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="iwae_nll"):
        evaluation.iwae_nll(model, bad, num_samples=2, verbose=False)
    with pytest.raises(ValueError, match="iwae_nll.*first batch"):
        evaluation.iwae_nll(model, tf.data.Dataset.from_tensor_slices(bad).batch(8), num_samples=2, verbose=False)
    with pytest.raises(ValueError, match="AIS"):
        evaluation.ais_log_likelihoods(model, tf.constant(bad), num_steps=2, num_chains=2, verbose=False)
    good = binary_images(16)
    assert model.fit(tf.constant(good), batch_size=8, epochs=1, verbose=0).history["loss"]
