"""Resume after SIGKILL (mid-epoch, and mid-checkpoint-write), and the NaN guard's checkpoints.

The CLI runs in real subprocesses (`python -m tests.cli_hooks`, the CLI plus test hooks) that are
killed with SIGKILL, so nothing in the process gets to clean up.
"""
import json
import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

from tfdgm import callbacks as cbs
from tests.harness import binary_images, tiny_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 3 epochs of 6 steps, one step per execution so callbacks see every step, state every 2 steps.
SMALL = ["--config", os.path.join(ROOT, "configs", "vae_mlp_fashion_mnist.py"),
         "--config.model.hidden_units=(16,)", "--config.model.latent_dim=4", "--config.data.batch_size=50",
         "--config.training.epochs=3", "--config.training.max_steps_per_epoch=6",
         "--config.training.steps_per_execution=1", "--config.training.checkpoint_every_n_steps=2",
         "--config.eval.num_samples=2", "--config.eval.num_examples=50", "--config.eval.num_image_samples=4"]
TIMEOUT_S = 240


def _env(**hooks):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow")
    env.update({key: str(value) for key, value in hooks.items()})
    return env


def _command(workdir):
    return [sys.executable, "-m", "tests.cli_hooks", "train", "--workdir", str(workdir), *SMALL]


def _run(workdir, **hooks):
    return subprocess.run(_command(workdir), cwd=ROOT, env=_env(**hooks), capture_output=True, text=True,
                          timeout=TIMEOUT_S)


def _state(workdir):
    return json.load(open(os.path.join(workdir, "checkpoints", "state.json")))


def _final_weights(workdir):
    return keras.models.load_model(os.path.join(workdir, "model.keras"), compile=False).get_weights()


@pytest.mark.slow  # several training processes: minutes on 2 cores; CI runs it (-m slow)
def test_killed_mid_epoch_and_mid_save_resumes_to_the_uninterrupted_weights(tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    result = _run(reference)
    assert result.returncode == 0, result.stderr[-3000:]

    # 1. SIGKILL from outside after step 9 (epoch 2 of 3, its 3rd step); the last state is step 8.
    process = subprocess.Popen(_command(killed), cwd=ROOT, env=_env(TFDGM_TEST_PAUSE_AT_STEP=9),
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in process.stdout:
            if line.startswith("PAUSED AT STEP"):
                break
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=60)
    assert line.strip() == "PAUSED AT STEP 9"
    assert _state(killed)["step"] == 8 and not os.path.exists(killed / "model.keras")

    # 2. The same command resumes at step 8 and is killed while writing the state of step 14:
    # a truncated temporary file is left behind, state.json still names step 12's complete file.
    result = _run(killed, TFDGM_TEST_DIE_IN_SAVE_AT_STEP=14)
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    assert "Resuming from" in result.stdout and "(step 8)" in result.stdout
    assert _state(killed)["step"] == 12
    assert [f for f in os.listdir(killed / "checkpoints") if f.startswith(".tmp-")]

    # 3. And once more to the end.
    result = _run(killed)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(step 12)" in result.stdout
    assert not [f for f in os.listdir(killed / "checkpoints") if f.startswith(".tmp-")]  # cleaned at the start
    metrics = json.load(open(killed / "metrics.json"))
    assert metrics["steps"] == 18 and [r["epoch"] for r in metrics["history"]] == [1, 2, 3]

    # Same data stream position, weights, Adam moments and seed-generator state at every restart,
    # and the same ops in the same order on one CPU: the weights are bit-for-bit identical.
    for a, b in zip(_final_weights(reference), _final_weights(killed)):
        np.testing.assert_array_equal(a, b)


def _start_paused(workdir, step, *extra):
    """A trainer subprocess paused (sleeping) after optimizer step `step`, holding workdir's lock."""
    process = subprocess.Popen(_command(workdir) + list(extra), cwd=ROOT, env=_env(TFDGM_TEST_PAUSE_AT_STEP=step),
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in process.stdout:
        if line.startswith("PAUSED AT STEP"):
            return process
    process.kill()
    raise AssertionError("the trainer ended before pausing")


@pytest.mark.slow  # several training processes: minutes on 2 cores; CI runs it (-m slow)
def test_a_second_trainer_on_a_workdir_is_refused_and_a_dead_ones_lock_is_taken_over(tmp_path, capsys):
    from tests.test_workdir import _run_cli

    workdir, fewer = tmp_path / "w", ["--config.training.epochs=1"]
    first = _start_paused(workdir, 2, *fewer)
    try:
        lock = json.load(open(workdir / ".lock"))
        assert lock["pid"] == first.pid and lock["host"]
        capsys.readouterr()
        assert _run_cli("train", "--workdir", str(workdir), *SMALL, *fewer) == 2  # the second trainer: this process
        err = capsys.readouterr().err
        assert err.startswith("tfdgm: error: ") and len(err.strip().splitlines()) == 1
        assert f"is in use by another `tfdgm train` (pid {first.pid} on host" in err
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    assert os.path.exists(workdir / ".lock")  # left behind by the killed trainer: stale
    assert _run_cli("train", "--workdir", str(workdir), *SMALL, *fewer) == 0
    assert not os.path.exists(workdir / ".lock")  # released on exit
    assert json.load(open(workdir / "metrics.json"))["status"] == "completed"


def test_training_state_is_not_saved_from_non_finite_losses(tmp_path):
    model = tiny_model("vae")
    model.compile(optimizer="sgd", jit_compile=False, steps_per_execution=1)
    messages = []
    guard = cbs.NaNGuard(print_fn=messages.append)
    state = cbs.TrainingCheckpoint(tmp_path, every_n_steps=1)
    model.fit(binary_images(16), batch_size=8, epochs=1, verbose=0, callbacks=[guard, state])
    assert state.saved_step == 2 and not guard.triggered

    # An infinite loss at step 2 of epoch 2 (global step 4): NaNGuard names step and metric,
    # and the training state stays at the last finite step.
    model.optimizer.iterations.assign(4)
    guard.set_model(model)
    state.set_model(model)
    guard.on_epoch_begin(1)
    for callback in (guard, state):
        callback.on_train_batch_end(1, {"loss": float("inf"), "kl": 1.0})
    assert guard.triggered and model.stop_training
    assert guard.failure == {"epoch": 2, "batch": 2, "global_step": 4, "metrics": {"loss": float("inf")}}
    assert "non-finite loss=inf at epoch 2, batch 2 (optimizer step 4)" in messages[-1]
    assert state.saved_step == 2 and cbs.TrainingCheckpoint.read(tmp_path)["step"] == 2
    # The previous file is kept as the fallback of the latest; older ones are removed.
    assert sorted(os.listdir(tmp_path)) == ["state-1.npz", "state-2.npz", "state.json"]

    restored = tiny_model("vae")
    restored.compile(optimizer="sgd")
    cbs.TrainingCheckpoint.restore(restored, cbs.TrainingCheckpoint.read(tmp_path))
    assert restored.optimizer.iterations.numpy() == 2
    # The noise stream resumes where step 2 left it (the model has not drawn since).
    np.testing.assert_array_equal(restored.seed_generator.state.numpy(), model.seed_generator.state.numpy())
    assert restored.seed_generator.state.numpy()[1] > 0
    for a, b in zip(restored.weights, model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_training_state_holds_every_optimizer_of_a_model_with_parameter_groups(tmp_path):
    model = tiny_model("ais_vae")
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False, steps_per_execution=1)
    state = cbs.TrainingCheckpoint(tmp_path, every_n_steps=0)
    model.fit(binary_images(16), batch_size=8, epochs=1, verbose=0, callbacks=[state])
    saved = cbs.TrainingCheckpoint.read(tmp_path)
    assert saved["step"] == 2 and saved["groups"] == ["p", "q"]

    restored = tiny_model("ais_vae")
    restored.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
    cbs.TrainingCheckpoint.restore(restored, saved)
    for group, optimizer in model.optimizers_by_group.items():
        other = restored.optimizers_by_group[group]
        assert len(optimizer.variables) == len(other.variables) > 2
        for a, b in zip(optimizer.variables, other.variables):
            np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=f"{group} {a.path}")
    for a, b in zip(model.weights, restored.weights):  # including the adapted HMC step sizes
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(restored.seed_generator.state.numpy(), model.seed_generator.state.numpy())

    wrong = tiny_model("ais_vae", hidden_units=(16, 7))
    wrong.compile(optimizer="adam", jit_compile=False)
    with pytest.raises(ValueError, match="shape"):
        cbs.TrainingCheckpoint.restore(wrong, saved)


@pytest.mark.parametrize("bad", [float("nan"), float("-inf")])
def test_nan_guard_names_the_metric(bad):
    model = tiny_model("vae")
    model.compile(optimizer="sgd")
    guard = cbs.NaNGuard(print_fn=lambda message: None)
    guard.set_model(model)
    guard.on_train_batch_end(0, {"loss": 1.0, "recon": bad})
    assert list(guard.failure["metrics"]) == ["recon"] and "recon=" in guard.message
