"""Every registered model under tf.distribute.MirroredStrategy over 2 logical CPUs (conftest.py).

The claim under test: with the same global batches, seeds and initial weights, N replicas train
exactly like one device (losses averaged over the global batch, gradients summed, metrics
aggregated), while each replica draws its own noise.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdgm import distribute
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
        model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=False)
    history = model.fit(binary_images(NUM_EXAMPLES), batch_size=BATCH, epochs=epochs, verbose=0,
                        shuffle=False).history
    return model, history


@pytest.mark.parametrize("name, kwargs", [(n, {}) for n in ALL_MODELS] + [("vae", {"free_bits": 0.3})],
                         ids=ALL_MODELS + ["vae-free_bits"])
def test_mirrored_training_matches_one_device(name, kwargs, mirrored, monkeypatch):
    monkeypatch.setattr(dists, "gaussian_sample", fixed_replica_noise())
    single, single_history = _train(name, **kwargs)
    replicated, replicated_history = _train(name, mirrored, **kwargs)
    assert replicated.optimizer.iterations.numpy() == single.optimizer.iterations.numpy() == 6
    for a, b in zip(single.get_weights(), replicated.get_weights()):
        np.testing.assert_allclose(b, a, rtol=RTOL, atol=ATOL)
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
    # Both fail inside Keras with MirroredStrategy (see LatentVariableModel.compile).
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
