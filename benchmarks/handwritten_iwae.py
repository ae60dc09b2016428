"""A minimal hand-written Keras 3 IWAE, as a typical user would write it (the baseline for tfdgm).

Burda et al. (2016) MLP: encoder 784-200-200 tanh -> 50-d Gaussian q(z|x) (softplus scale),
decoder 50-200-200 tanh -> 784 Bernoulli logits. K=1 is the single-sample-ELBO VAE.
Deliberately independent of tfdgm: plain Dense layers, TFP distributions, a custom train_step.

Standalone use:  python benchmarks/handwritten_iwae.py --k 5 --epochs 1
"""
import argparse
import math
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402

tfd = tfp.distributions


class HandwrittenIWAE(keras.Model):
    """IWAE with K importance samples trained by `fit` through a custom `train_step`."""

    def __init__(self, num_samples=1, latent_dim=50, hidden=200, data_dim=784, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.num_samples = num_samples
        self.latent_dim = latent_dim
        self.data_dim = data_dim
        self.encoder_body = keras.Sequential(
            [keras.Input((data_dim,)), keras.layers.Dense(hidden, "tanh"), keras.layers.Dense(hidden, "tanh")]
        )
        self.enc_loc = keras.layers.Dense(latent_dim)
        self.enc_scale = keras.layers.Dense(latent_dim, activation="softplus")
        self.decoder = keras.Sequential(
            [
                keras.Input((latent_dim,)),
                keras.layers.Dense(hidden, "tanh"),
                keras.layers.Dense(hidden, "tanh"),
                keras.layers.Dense(data_dim),
            ]
        )
        self.enc_loc.build((None, hidden))
        self.enc_scale.build((None, hidden))
        self.seed_gen = keras.random.SeedGenerator(seed)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.built = True  # every layer above is built, so weights can be saved before/without a call

    def encode(self, x):
        h = self.encoder_body(tf.reshape(x, [-1, self.data_dim]))
        return tfd.Independent(tfd.Normal(self.enc_loc(h), self.enc_scale(h) + 1e-4), 1)

    def log_weights(self, x, k, seed=None):
        """log p(x, z_k) - log q(z_k|x) for k samples: [k, B]."""
        x = tf.reshape(x, [-1, self.data_dim])
        q = self.encode(x)
        if seed is None:
            seed = self.seed_gen.next()
        z = q.sample(k, seed=tf.cast(seed, tf.int32))  # [k, B, D]
        prior = tfd.Independent(tfd.Normal(tf.zeros(self.latent_dim), tf.ones(self.latent_dim)), 1)
        logits = self.decoder(tf.reshape(z, [-1, self.latent_dim]))
        logits = tf.reshape(logits, [k, -1, self.data_dim])
        log_px_z = tfd.Independent(tfd.Bernoulli(logits=logits), 1).log_prob(x)
        return log_px_z + prior.log_prob(z) - q.log_prob(z)

    def iwae_bound(self, x, k, seed=None):
        log_w = self.log_weights(x, k, seed)
        return tf.reduce_logsumexp(log_w, axis=0) - math.log(k)

    def train_step(self, data):
        x = data[0] if isinstance(data, (tuple, list)) else data
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(self.iwae_bound(x, self.num_samples))
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    @property
    def metrics(self):
        return [self.loss_tracker]

    def call(self, x):
        return tf.sigmoid(self.decoder(self.encode(x).mean()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--steps_per_epoch", type=int, default=None)
    parser.add_argument("--jit", type=int, default=1)
    args = parser.parse_args()
    tf.random.set_seed(0)
    model = HandwrittenIWAE(num_samples=args.k)
    model.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-4), jit_compile=bool(args.jit))
    start = time.perf_counter()
    import tfdgm.data  # the data pipeline only; the model above is independent of tfdgm

    train = tfdgm.data.load("fashion_mnist", batch_size=100, repeat=args.steps_per_epoch is not None)
    model.fit(train,
              epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, verbose=2)
    print(f"train time {time.perf_counter() - start:.1f}s")
    test = tfdgm.data.load_arrays("fashion_mnist", "test")[:1000]
    test = (np.random.default_rng(0).random(test.shape, dtype=np.float32) < test).astype(np.float32)
    bound = np.mean([model.iwae_bound(test[i:i + 100], 100).numpy().mean() for i in range(0, len(test), 100)])
    print(f"test IWAE-100 bound on 1000 examples: {bound:.2f} nats")


if __name__ == "__main__":
    main()
