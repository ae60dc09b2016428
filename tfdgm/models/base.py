"""The shared base class of every latent-variable model, and the model registry.

A model owns an encoder q(z|x), a decoder p(x|z), a prior p(z) and a `keras.random.SeedGenerator`.
Subclasses implement one method, `compute_losses(x)`, returning per-example losses and metrics;
the base class turns them into a `train_step` that is correct under `tf.distribute`:

- the loss is summed over the replica's examples and divided by the *global* batch size (summed
  across replicas when there are several, so uneven last batches are weighted right), and the
  optimizer sums gradients across replicas: the result is the single-device gradient;
- metrics are per-example means, so Keras's cross-replica sum of (total, count) is the global mean;
- every replica folds its replica id into the seeds it draws, so replicas sample distinct noise
  (Keras's SeedGenerator is mirrored: without this every replica would draw the same numbers).
"""
import warnings

import numpy as np
import keras
import tensorflow as tf

from tfdgm import distributions as dists
from tfdgm import estimators
from tfdgm.nets import make_networks

_REGISTRY = {}

# Every model reports these, in nats per example; subclasses add their own.
BASE_METRICS = ("loss", "elbo", "kl", "recon")

DEFAULT_STEPS_PER_EXECUTION = 10


def register(name):
    """Class decorator: registers a model under `name` and makes it Keras-serialisable."""

    def decorator(cls):
        if name in _REGISTRY:
            raise ValueError(f"A model named {name!r} is already registered ({_REGISTRY[name].__name__}).")
        cls = keras.saving.register_keras_serializable(package="tfdgm")(cls)
        cls.registry_name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def registered_models():
    """Returns {name: class} for every registered model."""
    return dict(_REGISTRY)


def get_model_class(name):
    if name not in _REGISTRY:
        raise ValueError(f"Unknown model {name!r}; registered models are {sorted(_REGISTRY)}.")
    return _REGISTRY[name]


def _to_seed(seed):
    """A stateless seed (shape [2] int64) from an int, a [2] tensor or a SeedGenerator draw.

    Note: a given seed reproduces the same draws within one compile mode. XLA's stateless
    RNG kernels produce other numbers than TensorFlow's CPU kernels for the same seed
    (TF 2.21), so a jit_compile=True run and a graph-mode run sample different noise.
    """
    seed = tf.convert_to_tensor(seed)
    if seed.shape.rank == 0:
        seed = tf.stack([tf.cast(seed, tf.int64), tf.constant(0, tf.int64)])
    return tf.cast(seed, tf.int64)


def _replica_context():
    """The replica context when training on several replicas, else None."""
    ctx = tf.distribute.get_replica_context()
    return ctx if ctx is not None and ctx.num_replicas_in_sync > 1 else None


def _replica_seed(seed):
    """seed with the replica id folded in when there are several replicas; seed unchanged on one
    device, so single-device runs draw exactly what they drew before distribution support."""
    ctx = _replica_context()
    if ctx is None:
        return seed
    replica_id = tf.cast(ctx.replica_id_in_sync_group, tf.int64)
    return tf.random.experimental.stateless_fold_in(seed, replica_id, alg="philox")


def global_batch_size(per_example):
    """Examples in this step across all replicas (the local batch size on one device)."""
    local = tf.cast(tf.shape(per_example)[0], tf.float32)
    ctx = _replica_context()
    return local if ctx is None else ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.stop_gradient(local))


def average_loss(per_example_loss):
    """sum(per-example loss on this replica) / global batch size.

    Like `tf.nn.compute_average_loss`, but the global batch size is all-reduced rather than
    taken as local size x replicas, which is wrong for a last batch split unevenly (7 = 4 + 3).
    """
    return tf.reduce_sum(per_example_loss) / global_batch_size(per_example_loss)


def global_mean(values, axis=0):
    """Mean over the batch axis across all replicas (a batch statistic, e.g. free bits')."""
    ctx = _replica_context()
    if ctx is None:
        return tf.reduce_mean(values, axis=axis)
    total = ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.reduce_sum(values, axis=axis))
    return total / global_batch_size(values)


class LatentVariableModel(keras.Model):
    """Base class: x -> q(z|x) -> K samples -> log-weights [K, B] -> an estimator.

    Args:
      input_shape: shape of one example, e.g. (28, 28, 1).
      latent_dim: size of z.
      architecture: "mlp" (Burda et al. 784-200-200 tanh) or "conv".
      hidden_units: hidden widths of the networks.
      likelihood: "bernoulli" (data must be binary).
      num_samples: K, the importance samples per example used in training.
      seed: seed of the model's SeedGenerator (training randomness).
      precision: "float32" or "mixed_bfloat16" (networks in bfloat16, log-weights in float32).
    """

    registry_name = None
    extra_metrics = ()

    def __init__(
        self,
        input_shape=(28, 28, 1),
        latent_dim=50,
        architecture="mlp",
        hidden_units=(200, 200),
        likelihood="bernoulli",
        num_samples=1,
        seed=None,
        precision="float32",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(num_samples) < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
        if precision not in ("float32", "mixed_bfloat16"):
            raise ValueError(f"precision must be 'float32' or 'mixed_bfloat16', got {precision!r}.")
        if likelihood not in dists.LIKELIHOODS:
            raise ValueError(f"Unknown likelihood {likelihood!r}; choose one of {dists.LIKELIHOODS}.")
        self.example_shape = tuple(int(d) for d in input_shape)
        self.latent_dim = int(latent_dim)
        self.architecture = architecture
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.likelihood = likelihood
        self.num_samples = int(num_samples)
        self.seed = seed
        self.precision = precision
        self.encoder, self.decoder = make_networks(
            architecture, self.example_shape, self.latent_dim, self.hidden_units, dtype=precision
        )
        self.seed_generator = keras.random.SeedGenerator(seed, name="seed_generator")
        self.trackers = {
            name: keras.metrics.Mean(name=name) for name in BASE_METRICS + tuple(self.extra_metrics)
        }
        # Networks have fixed input shapes, so build now: saving, loading and export need no data.
        self.encoder.build((None,) + self.example_shape)
        self.decoder.build((None, self.latent_dim))
        self.built = True

    @classmethod
    def default_config(cls):
        """{constructor argument: default} of this class and its bases: what `config.model` holds.

        Declared once, by the constructors' signatures; arguments without a JSON-friendly default
        (input_shape comes from the data) are left out.
        """
        import inspect

        defaults = {}
        for klass in reversed(cls.__mro__):
            if "__init__" not in vars(klass) or not issubclass(klass, LatentVariableModel):
                continue
            for name, param in inspect.signature(klass.__init__).parameters.items():
                if name in ("self", "input_shape") or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
                    continue
                if param.default is not inspect.Parameter.empty:
                    value = param.default
                    defaults[name] = list(value) if isinstance(value, tuple) else value
        return defaults

    @property
    def optimizers_by_group(self):
        """{parameter group: optimizer}; every group's optimizer is saved and restored."""
        return {"all": self.optimizer}

    # ------------------------------------------------------------------ distributions
    @property
    def event_ndims(self):
        return len(self.example_shape)

    def prior(self):
        return dists.standard_normal(self.latent_dim)

    def posterior(self, x):
        loc, scale = self.encoder(x)
        return dists.diagonal_gaussian(loc, scale)

    def _next_seed(self, seed=None):
        """An explicit seed as given, or the generator's next seed made distinct per replica."""
        if seed is not None:
            return _to_seed(seed)
        return _replica_seed(_to_seed(self.seed_generator.next()))

    def log_weights(self, x, num_samples, seed=None, stop_q_params=False):
        """Draws K reparameterised z ~ q(z|x) and scores them.

        Returns a dict of [K, B] tensors: log_w, log_px_z, log_pz, log_qz, and z [K, B, D],
        plus `posterior` (the q distribution). With stop_q_params, log q(z|x) is evaluated
        with q's parameters held fixed while z still depends on them (DReG; Tucker et al.).
        """
        x = tf.cast(x, tf.float32)
        loc, scale = self.encoder(x)
        q = dists.diagonal_gaussian(loc, scale)
        z = dists.gaussian_sample(loc, scale, num_samples, self._next_seed(seed))
        if stop_q_params:
            q_for_log_prob = dists.diagonal_gaussian(tf.stop_gradient(loc), tf.stop_gradient(scale))
        else:
            q_for_log_prob = q
        log_qz = q_for_log_prob.log_prob(z)
        log_pz, log_px_z = self.log_prior_and_likelihood(z, x)
        return {
            "log_w": log_px_z + log_pz - log_qz,
            "log_px_z": log_px_z,
            "log_pz": log_pz,
            "log_qz": log_qz,
            "z": z,
            "posterior": q,
        }

    def log_prior_and_likelihood(self, z, x):
        """(log p(z), log p(x|z)) for latents z [..., B, latent_dim] and data x [B, ...].

        The hook AIS, BDMC and MCMC-based training use: every model with a tractable joint
        log p(x, z) provides it (hierarchical models override it).
        """
        x = tf.cast(x, tf.float32)
        log_pz = self.prior().log_prob(z)
        log_px_z = dists.likelihood_log_prob(self.likelihood, self.decoder(z), x, self.event_ndims)
        return log_pz, log_px_z

    def kl_divergence(self, posterior):
        """KL(q(z|x) || p(z)) per example [B], analytic for the Gaussian pair."""
        return posterior.kl_divergence(self.prior())

    # ------------------------------------------------------------------ training
    def compile(self, optimizer="adam", **kwargs):
        """`keras.Model.compile`, with `steps_per_execution` defaulting to 10.

        Several optimizer steps per call of the compiled function amortise the per-step
        dispatch, which dominates small steps (K=1 at batch 100) on CPU; see BENCHMARKS.md.
        Pass steps_per_execution=1 for Keras's own default. With several replicas (other than on
        TPU) it is always 1 and XLA is off; see the comment below.
        """
        strategy = self.distribute_strategy
        if strategy.num_replicas_in_sync > 1 and not isinstance(strategy, tf.distribute.TPUStrategy):
            # Two Keras 3.15 / TF 2.21 limits with several replicas (TPUStrategy has neither):
            # XLA compiles the whole multi-replica step and cannot reach variables on other
            # devices ("Trying to access resource ... located in device CPU:1"), and the
            # steps_per_execution > 1 loop fails ("You must feed a value for placeholder"),
            # for plain Keras models too.
            for key, value in (("jit_compile", False), ("steps_per_execution", 1)):
                if kwargs.get(key) not in (value, None, "auto"):
                    warnings.warn(f"{key}={kwargs[key]} is not supported with {type(strategy).__name__} over "
                                  f"{strategy.num_replicas_in_sync} replicas; using {key}={value}.", stacklevel=2)
                kwargs[key] = value
        kwargs.setdefault("steps_per_execution", DEFAULT_STEPS_PER_EXECUTION)
        super().compile(optimizer=optimizer, **kwargs)
        self._compiled_steps_per_execution = self.steps_per_execution

    def compile_from_config(self, config):
        # Keras skips re-compiling on load when compile() is overridden; ours only changes a
        # default, so restore the optimizer (and its state) as Keras does for plain models.
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def compute_losses(self, x, training=True):
        """Returns (per-example loss [B], {metric name: per-example value [B]})."""
        raise NotImplementedError(f"{type(self).__name__} must implement compute_losses.")

    def compute_gradients(self, x):
        """Returns (gradients aligned with trainable_variables, metrics). One surrogate for all."""
        with tf.GradientTape() as tape:
            per_example_loss, metrics = self.compute_losses(x, training=True)
            loss = average_loss(per_example_loss)
        return tape.gradient(loss, self.trainable_variables), metrics

    def train_step(self, data):
        x = self._unpack(data)
        grads, metrics = self.compute_gradients(x)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        return self._update_metrics(metrics)

    def test_step(self, data):
        x = self._unpack(data)
        _, metrics = self.compute_losses(x, training=False)
        return self._update_metrics(metrics)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def _update_metrics(self, metrics):
        # Per-example values, not the batch mean: each tracker then holds (sum, count) over
        # examples, which Keras sums across replicas, so uneven replica batches average right.
        for name, tracker in self.trackers.items():
            tracker.update_state(metrics[name])
        results = {name: tracker.result() for name, tracker in self.trackers.items()}
        strategy = tf.distribute.get_strategy()
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and strategy.extended._in_multi_worker_mode():
            # Keras 3.15 reduces multi-worker step logs with strategy.reduce(MEAN, v, axis=0),
            # which fails on scalars ("Invalid reduction dimension 0"): give them that axis.
            results = {name: tf.reshape(value, [1]) for name, value in results.items()}
        return results

    def _unpack(self, data):
        x = data[0] if isinstance(data, (tuple, list)) else data
        return tf.cast(x, tf.float32)

    def _base_metrics(self, out, loss):
        """The metrics every model reports, from a `log_weights` result."""
        kl = self.kl_divergence(out["posterior"])
        recon = tf.reduce_mean(out["log_px_z"], axis=0)
        return {"loss": loss, "elbo": recon - kl, "kl": kl, "recon": recon}

    def fit(self, x=None, y=None, **kwargs):
        # Arrays bypass tfdgm.data, so check them here before any training happens.
        if isinstance(x, np.ndarray):
            from tfdgm.data import validate

            x = validate(x, likelihood=self.likelihood, name="x")
            self._check_example_shape(x.shape[1:])
        elif isinstance(x, tf.data.Dataset):
            spec = x.element_spec[0] if isinstance(x.element_spec, tuple) else x.element_spec
            self._check_example_shape(spec.shape[1:])
        self._fit_steps_per_execution(kwargs.get("steps_per_epoch"))
        return super().fit(x, y, **kwargs)

    def _fit_steps_per_execution(self, steps_per_epoch):
        """Keras runs whole executions when steps_per_epoch is given (13 steps at 10 per execution
        train 20), so use the largest steps_per_execution that divides steps_per_epoch."""
        spe = getattr(self, "_compiled_steps_per_execution", self.steps_per_execution)
        if steps_per_epoch and steps_per_epoch % spe:
            spe = max(d for d in range(1, spe + 1) if steps_per_epoch % d == 0)
        if spe != self.steps_per_execution:  # each fit starts from what compile() asked for
            self.steps_per_execution = spe
            self.train_function = None  # retrace with the new count

    def _check_example_shape(self, shape):
        shape = tuple(shape)
        if len(shape) != len(self.example_shape) or any(
            d is not None and d != e for d, e in zip(shape, self.example_shape)
        ):
            raise ValueError(
                f"{type(self).__name__} was built for examples of shape {self.example_shape}, but the data "
                f"has examples of shape {shape}. Pass input_shape={shape} when creating the model."
            )

    # ------------------------------------------------------------------ inference API
    def call(self, x, training=False):
        """Reconstruction: the mean of p(x|z) at the posterior mean of z."""
        return self.reconstruct(x)

    def encode(self, x):
        """Posterior mean E_q[z|x], [B, latent_dim]."""
        loc, _ = self.encoder(tf.cast(x, tf.float32))
        return loc

    def decode(self, z):
        """Mean of p(x|z) (pixel probabilities) for latents [..., latent_dim]."""
        return tf.sigmoid(self.decoder(z))

    def reconstruct(self, x):
        return self.decode(self.encode(x))

    def sample(self, num_samples, seed=None):
        """Images drawn from the model: z ~ p(z), then the mean of p(x|z). [N, *input_shape]."""
        zeros = tf.zeros([self.latent_dim])
        z = dists.gaussian_sample(zeros, tf.ones_like(zeros), num_samples, self._next_seed(seed))
        return self.decode(z)

    def sample_joint(self, num_samples, seed=None):
        """(z, x) ~ p(z) p(x|z) with x a draw (not the mean) of the likelihood: simulated data whose
        latents are exact posterior samples, as BDMC needs. Shapes [N, latent_dim], [N, *input_shape]."""
        z_seed, x_seed = tf.unstack(tf.random.experimental.stateless_split(self._next_seed(seed), 2))
        zeros = tf.zeros([self.latent_dim])
        z = dists.gaussian_sample(zeros, tf.ones_like(zeros), num_samples, z_seed)
        likelihood = dists.likelihood_distribution(self.likelihood, self.decoder(z), self.event_ndims)
        # TFP wants int32 stateless seeds; truncating the int64 split keeps it deterministic.
        return z, tf.cast(likelihood.sample(seed=tf.cast(x_seed, tf.int32)), tf.float32)

    def log_likelihood_bound(self, x, num_samples=None, seed=None):
        """The IWAE-K lower bound on log p(x) per example [B] (K defaults to training K)."""
        out = self.log_weights(x, self.num_samples if num_samples is None else num_samples, seed=seed)
        return estimators.iwae_bound(out["log_w"])

    # ------------------------------------------------------------------ serialisation
    def get_config(self):
        config = super().get_config()
        config.update(
            input_shape=list(self.example_shape),
            latent_dim=self.latent_dim,
            architecture=self.architecture,
            hidden_units=list(self.hidden_units),
            likelihood=self.likelihood,
            num_samples=self.num_samples,
            seed=self.seed,
            precision=self.precision,
        )
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def export(self, filepath, format="tf_saved_model", verbose=True, **kwargs):
        """Writes a SavedModel with signatures `serve` (reconstruct), `encode`, `reconstruct`,
        `sample(num_samples, seed)` and `log_likelihood_bound(x, num_samples, seed)`.

        Loading it needs only TensorFlow: `tf.saved_model.load(filepath).sample(...)`.
        """
        if format != "tf_saved_model":
            return super().export(filepath, format=format, verbose=verbose, **kwargs)
        from tfdgm.export import export_saved_model

        return export_saved_model(self, filepath, verbose=verbose)
