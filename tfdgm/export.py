"""SavedModel export with generative signatures; loading needs only TensorFlow."""
import keras
import tensorflow as tf


def export_saved_model(model, filepath, verbose=True):
    """Exports `model` with endpoints serve/reconstruct, encode, sample and log_likelihood_bound.

    Randomness is explicit: `sample` and `log_likelihood_bound` take an int32 seed of shape [2],
    so the same seed always gives the same output (TFP stateless sampling).
    """
    archive = keras.export.ExportArchive()
    archive.track(model)
    images = tf.TensorSpec((None,) + model.example_shape, tf.float32, name="x")
    seed = tf.TensorSpec((2,), tf.int32, name="seed")
    count = tf.TensorSpec((), tf.int32, name="num_samples")

    archive.add_endpoint("serve", model.reconstruct, input_signature=[images])
    archive.add_endpoint("reconstruct", model.reconstruct, input_signature=[images])
    archive.add_endpoint("encode", model.encode, input_signature=[images])
    archive.add_endpoint(
        "sample", lambda num_samples, seed: model.sample(num_samples, seed=seed), input_signature=[count, seed]
    )
    archive.add_endpoint(
        "log_likelihood_bound",
        lambda x, num_samples, seed: model.log_likelihood_bound(x, num_samples, seed=seed),
        input_signature=[images, count, seed],
    )
    archive.write_out(filepath, verbose=verbose)
    return filepath
