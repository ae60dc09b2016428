"""Every registered model under tf.distribute.MirroredStrategy over 2 logical CPUs (conftest.py).

The claim under test: with the same global batches, seeds and initial weights, N replicas train
exactly like one device (losses averaged over the global batch, gradients summed, metrics
aggregated), while each replica draws its own noise.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdgm import distribute, models
from tfdgm import distributions as dists
from tests.harness import ALL_MODELS, binary_images, fixed_replica_noise, tiny_model

# 21 examples in batches of 8: 8, 8, 5 -> per replica 4+4, 4+4 and an uneven 3+2.
NUM_EXAMPLES, BATCH = 21, 8
# float32 sums regrouped by replica (two partial sums, then an all-reduce) differ from the
# one-device sum in the last bits; a few SGD steps keep that at ~1e-7 relative.
RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture(scope="module")
def mirrored():
    strategy = distribute.make_strategy("mirrored")
    assert strategy.num_replicas_in_sync == 2, "conftest.py should give every test process 2 CPUs"
    return strategy


def _train(name, strategy=None, epochs=2, **model_kwargs):
    scope = strategy.scope() if strategy is not None else tf.distribute.get_strategy().scope()
    with scope:
        model = tiny_model(name, **model_kwargs)
        # SGD, not Adam: Adam's first steps are ~lr*sign(g), which would turn rounding in
        # near-zero gradients into lr-sized weight differences.
        # towers=1: on one device "auto" would split the batch into towers, which draw their noise
        # per part like replicas but without a replica's row offset; this test is about replicas
        # (tests/test_towers.py checks towers against the whole batch).
        model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=False, towers=1)
    history = model.fit(binary_images(NUM_EXAMPLES), batch_size=BATCH, epochs=epochs, verbose=0,
                        shuffle=False).history
    return model, history


def without_mcmc(name):
    """Models whose training draws noise inside TFP's MCMC kernels cannot get replica-independent
    noise (the per-replica offset would need a cross-replica gather inside the kernel's loop), so
    annealed models (those with a `num_temperatures` argument) are compared in their special case
    without MCMC moves. tests/test_ais_vae.py checks the replicas' step sizes stay in sync with moves."""
    defaults = models.get_model_class(name).default_config()
    return {"num_temperatures": 1, "final_move": False} if "num_temperatures" in defaults else {}


@pytest.mark.parametrize("name, kwargs", [(n, without_mcmc(n)) for n in ALL_MODELS]
                         + [("vae", {"free_bits": 0.3})], ids=ALL_MODELS + ["vae-free_bits"])
def test_mirrored_training_matches_one_device(name, kwargs, mirrored, monkeypatch):
    monkeypatch.setattr(dists, "gaussian_sample", fixed_replica_noise())
    single, single_history = _train(name, **kwargs)
    replicated, replicated_history = _train(name, mirrored, **kwargs)
    assert replicated.optimizer.iterations.numpy() == single.optimizer.iterations.numpy() == 6
    for a, b in zip(single.get_weights(), replicated.get_weights()):
        # Normwise: replicas sum in another order, and rounding in the summed gradient is relative
        # to the tensor's scale, not to each (possibly near-zero) element.
        assert np.max(np.abs(b - a)) <= RTOL * np.max(np.abs(a)) + ATOL, (np.max(np.abs(b - a)), np.max(np.abs(a)))
    # Epoch metrics are means over all 21 examples, aggregated across the replicas.
    assert replicated_history.keys() == single_history.keys()
    for key in single_history:
        np.testing.assert_allclose(replicated_history[key], single_history[key], rtol=RTOL, atol=ATOL,
                                   err_msg=key)


def test_replicas_draw_distinct_noise_and_one_device_is_unchanged(mirrored):
    with mirrored.scope():
        model = tiny_model("iwae")
    seeds = mirrored.experimental_local_results(tf.function(lambda: mirrored.run(model._next_seed))())
    seeds = [s.numpy().tolist() for s in seeds]
    assert seeds[0] != seeds[1]
    # The generator's state stays mirrored: both replicas advanced it by the same one step.
    states = [v.numpy().tolist() for v in mirrored.experimental_local_results(model.seed_generator.state.value)]
    assert states[0] == states[1] == [7, 1]
    # Noise drawn in one step differs between replicas.
    noise = mirrored.run(tf.function(lambda: model.log_weights(tf.zeros((2, 8, 8, 1)), 3)["z"]))
    noise = [z.numpy() for z in mirrored.experimental_local_results(noise)]
    assert not np.allclose(noise[0], noise[1])
    # On one device the seed is the generator's, exactly as before distribution support.
    single = tiny_model("iwae")
    np.testing.assert_array_equal(single._next_seed(), [7, 0])


def test_xla_and_multi_step_execution_are_turned_off_for_several_replicas(mirrored):
    # Both fail inside Keras with MirroredStrategy (see GenerativeModel.compile).
    with mirrored.scope():
        model = tiny_model("vae")
        with pytest.warns(UserWarning, match="jit_compile=True is not supported with MirroredStrategy"):
            model.compile(optimizer="sgd", jit_compile=True, steps_per_execution=1)
    assert model.jit_compile is False
    with mirrored.scope():
        with pytest.warns(UserWarning, match="steps_per_execution=10 is not supported"):
            model.compile(optimizer="sgd", jit_compile=False, steps_per_execution=10)
    assert model.steps_per_execution == 1
    model.fit(binary_images(24), batch_size=8, epochs=1, verbose=0)
    assert model.optimizer.iterations.numpy() == 3


def test_make_strategy_names():
    assert isinstance(distribute.make_strategy("default"), type(tf.distribute.get_strategy()))
    with pytest.raises(ValueError, match="mirrored, multiworker, tpu, default"):
        distribute.make_strategy("horovod")


# ---------------------------------------------------------------------------- multi-worker CLI
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_RUN = ["--config", os.path.join(ROOT, "configs", "iwae_k5_mlp_fashion_mnist.py"),
            "--config.model.hidden_units=(16,)", "--config.model.latent_dim=4", "--config.model.num_samples=2",
            "--config.data.batch_size=20", "--config.training.jit_compile=False",
            "--config.training.max_steps_per_epoch=3", "--config.training.checkpoint_every_n_steps=2",
            "--config.eval.num_samples=2", "--config.eval.num_examples=20", "--config.eval.num_image_samples=4"]


def _launch(workdir, strategy, *args, task=None, ports=None):
    """A `tfdgm train` subprocess (with replica-independent fixed noise, tests/cli_hooks.py)."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow", TFDGM_TEST_FIXED_NOISE="1")
    env.pop("TF_CONFIG", None)
    if task is not None:
        env["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                       "task": {"type": "worker", "index": task}})
    command = [sys.executable, "-m", "tests.cli_hooks", "train", f"--strategy={strategy}",
               "--workdir", str(workdir), *TINY_RUN, *args]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process, timeout=240):
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


@pytest.mark.slow  # several training processes: minutes on 2 cores; CI runs it (-m slow)
def test_two_workers_train_like_one_process_and_only_the_chief_writes(tmp_path):
    ports = distribute.free_local_ports(2)
    workers = [_launch(tmp_path / "multi", "multiworker", "--config.training.epochs=2", task=i, ports=ports)
               for i in range(2)]
    # towers=1: one process would otherwise split each batch into towers, whose fixed noise is
    # drawn per part without the replicas' row offsets (tests/test_towers.py covers towers).
    single = _launch(tmp_path / "single", "default", "--config.training.epochs=2", "--config.training.towers=1")
    (rc0, out0, err0), (rc1, out1, err1) = _finish(workers[0]), _finish(workers[1])
    rc, _, err = _finish(single)
    assert rc0 == rc1 == rc == 0, (err0[-2000:], err1[-2000:], err[-2000:])
    assert "over 2 replica(s)" in out0

    # Worker 1 wrote only into a temporary directory, which is gone.
    temp_dir = re.search(r"writing to (\S+) \(removed at the end\)", out1).group(1)
    assert not os.path.exists(temp_dir) and "is not the chief" not in out0
    metrics = json.load(open(tmp_path / "multi" / "metrics.json"))
    assert metrics["num_replicas"] == 2 and metrics["steps"] == 6 and metrics["status"] == "completed"
    for name in ("model.keras", "samples.png", "checkpoints/state.json", "checkpoints/state-6.npz"):
        assert os.path.exists(tmp_path / "multi" / name), name

    # Same initial weights, the same examples per step (split_global_batches) and the same noise:
    # only the order of float32 sums differs (an all-reduce of two halves instead of one sum), so
    # after 6 Adam steps of 1e-3 the weights agree to ~3e-8; 1e-6 leaves room and still fails on
    # any real difference (one differing batch moves weights by ~2e-3, Adam's first step).
    multi = keras.models.load_model(tmp_path / "multi" / "model.keras", compile=False)
    one = keras.models.load_model(tmp_path / "single" / "model.keras", compile=False)
    for a, b in zip(multi.weights, one.weights):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6, err_msg=a.path)
    single_loss = json.load(open(tmp_path / "single" / "metrics.json"))["train"]["loss"]
    assert metrics["train"]["loss"] == pytest.approx(single_loss, rel=1e-5)


@pytest.mark.slow  # several training processes: minutes on 2 cores; CI runs it (-m slow)
def test_a_dead_worker_makes_the_other_fail_clearly_instead_of_hanging(tmp_path):
    ports = distribute.free_local_ports(2)
    workers = [_launch(tmp_path / "w", "multiworker", "--config.training.epochs=100000", task=i, ports=ports)
               for i in range(2)]
    try:
        state = tmp_path / "w" / "checkpoints" / "state.json"
        deadline = time.time() + 180
        while not state.exists() and time.time() < deadline and workers[0].poll() is None:
            time.sleep(0.2)
        assert state.exists(), "the job never trained a step"
        workers[1].send_signal(signal.SIGKILL)
        killed_at = time.time()
        rc, _, err = _finish(workers[0], timeout=120)
        elapsed = time.time() - killed_at
    finally:
        for w in workers:
            w.kill()
            w.communicate()
    assert rc == 1 and elapsed < 60, (rc, elapsed, err[-2000:])
    assert "tfdgm: error: training stopped because another worker of the job failed" in err
    assert "Restart every worker with the same command" in err
