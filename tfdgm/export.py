"""SavedModel export with generative signatures chosen by the model's capabilities.

Every model gets `sample(num_samples, seed)`; models with an encoder also `serve`/`reconstruct`
and `encode`; models with a bound `log_likelihood_bound(x, num_samples, seed)`; models with a free
energy (RBMs) `free_energy(x)`. Loading needs only
TensorFlow (no tfdgm, no TFP). Randomness is explicit: the int32 [2] seeds are stateless, so the
same seed always gives the same output.
"""
import keras
import tensorflow as tf


def export_saved_model(model, filepath, verbose=True):
    """Exports `model` to `filepath` (a directory); returns filepath."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    images = tf.TensorSpec((None,) + model.example_shape, tf.float32, name="x")
    seed = tf.TensorSpec((2,), tf.int32, name="seed")
    count = tf.TensorSpec((), tf.int32, name="num_samples")

    archive.add_endpoint(
        "sample", lambda num_samples, seed: model.sample(num_samples, seed=seed), input_signature=[count, seed]
    )
    if model.has_encoder:
        archive.add_endpoint("serve", model.reconstruct, input_signature=[images])
        archive.add_endpoint("reconstruct", model.reconstruct, input_signature=[images])
        archive.add_endpoint("encode", model.encode, input_signature=[images])
    if model.has_bound:
        archive.add_endpoint(
            "log_likelihood_bound",
            lambda x, num_samples, seed: model.log_likelihood_bound(x, num_samples, seed=seed),
            input_signature=[images, count, seed],
        )
    if getattr(model, "has_free_energy", False):  # -log p*(x), unnormalised (an RBM's free energy)
        archive.add_endpoint("free_energy", model.free_energy, input_signature=[images])
    archive.write_out(filepath, verbose=verbose)
    return filepath
