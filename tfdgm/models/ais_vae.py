"""Learning deep generative models with annealed importance sampling (Ding & Freedman).

The decoder follows an AIS estimate of the gradient of log p(x): K chains start at q(z|x), anneal
along f_beta(z) = q(z|x)^(1-beta) p(x, z)^beta with HMC moves, and

    d_theta = sum_k w~_k grad_theta log p(x, z_k),   w~ the chains' normalised AIS weights,

while the encoder follows the reparameterised ELBO gradient. IWAE (T = 1, no move) and Hoffman's
MH-HMC (K = 1, betas 0, 1, ..., 1) are special cases. The chains are not differentiated through,
so memory does not grow with T.

References:
  Ding & Freedman (2019), Learning Deep Generative Models with Annealed Importance Sampling.
  Neal (2001), Annealed Importance Sampling.
  Hoffman (2017), Learning Deep Latent Gaussian Models with Markov Chain Monte Carlo.
"""
import keras
import numpy as np
import tensorflow as tf

from tfdgm import estimators, mcmc
from tfdgm.mcmc import annealed_log_prob_fn, initial_state
from tfdgm.models.amortized import AmortizedModel
from tfdgm.models.base import copy_optimizer, global_mean, register

SAMPLING_METHODS = ("is", "ais")


def training_betas(schedule, num_temperatures, final_move):
    """The betas `mcmc.ais` runs for Algorithm 1, and the number of HMC moves they make.

    `mcmc.ais` makes T increments and T - 1 moves for T + 1 betas. Algorithm 1's optional last
    move z^T = HMC(z^{T-1}, beta_T) is a repeated beta_T = 1: its weight increment is zero.
    """
    if isinstance(schedule, str) and schedule == "mh_hmc":  # Hoffman (2017): 0, 1, ..., 1
        schedule = [0.0] + [1.0] * int(num_temperatures)
    betas = mcmc.annealing_schedule(schedule, num_temperatures)
    if final_move:
        betas = np.append(betas, 1.0)
    return betas, len(betas) - 2


def run_chains(model, x, betas, num_chains, *, leapfrog_steps, step_size, seed):
    """K AIS chains per example from q(z|x) to p(z|x) with step sizes used as given; an AISTrace.

    `model` needs what `tfdgm.mcmc.annealing` needs of it: prior(), posterior(x) and
    log_prior_and_likelihood(z, x). step_size: a scalar, [M] (one per move,
    shared by the batch) or [M, B]. Nothing here is differentiated.
    """
    init_seed, chain_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    z0 = tf.stop_gradient(initial_state(model, x, "encoder", num_chains, init_seed))
    num_moves = len(betas) - 2
    batch = tf.shape(z0)[1]
    step_size = tf.cast(step_size, tf.float32)
    if num_moves > 0:  # [M, B], used as given (Algorithm 1 sets the steps per temperature)
        step_size = tf.broadcast_to(tf.reshape(step_size, [-1, 1]) if step_size.shape.rank <= 1 else step_size,
                                    [num_moves, batch])
    else:
        step_size = tf.reduce_mean(step_size)  # no move: unused
    trace = mcmc.ais(annealed_log_prob_fn(model, x, "encoder"), z0, betas, seed=chain_seed,
                     num_leapfrog_steps=leapfrog_steps, step_size=step_size, adapt_step_size=False)
    return tf.nest.map_structure(tf.stop_gradient, trace)


def sample_implicit_posterior(model, x, method="ais", *, num_samples, num_temperatures=5, leapfrog_steps=5,
                              step_size=0.1, schedule="linear", final_move=True, seed=0):
    """Algorithm 2: one draw per example from q_IS(z|x) or q_AIS(z|x). Returns z [B, latent_dim].

    Both draw K candidates (from q, or as the end points of K AIS chains from q) and return one
    chosen with probability proportional to its importance weight. Cost: K decoder passes for
    "is"; about K x T x (L + 1) for "ais" (each HMC move is L leapfrog steps plus one evaluation
    at the new temperature), so the paper's equal-cost comparison is K_IS = L x K x T.

    Args:
      model: a tfdgm model, or any object with prior(), posterior(x) and
        log_prior_and_likelihood(z, x) (see `run_chains`).
      method: "is" or "ais".
      num_samples: K candidates (IS samples or AIS chains) per example.
      num_temperatures, leapfrog_steps, step_size, schedule, final_move: T, L, the leapfrog step
        (a scalar or one per move) and the betas, as in `AISVAE`; only for "ais".
      seed: a stateless seed (int or [2] integers).
    """
    if method not in SAMPLING_METHODS:
        raise ValueError(f"Unknown sampling method {method!r}; choose one of {SAMPLING_METHODS}.")
    x = tf.convert_to_tensor(x, tf.float32)
    seed = tf.convert_to_tensor(seed)
    seed = tf.cast(tf.stack([seed, 0]) if seed.shape.rank == 0 else seed, tf.int64)
    draw_seed, pick_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    if method == "is":
        posterior = model.posterior(x)
        z = initial_state(model, x, "encoder", num_samples, draw_seed)
        log_pz, log_px_z = model.log_prior_and_likelihood(z, x)
        log_w = log_pz + log_px_z - posterior.log_prob(z)
    else:
        betas, _ = training_betas(schedule, num_temperatures, final_move)
        trace = run_chains(model, x, betas, num_samples, leapfrog_steps=leapfrog_steps, step_size=step_size,
                           seed=draw_seed)
        z, log_w = trace.state, trace.log_weights
    # j ~ Categorical(w~) per example; z [K, B, D] -> [B, D].
    j = tf.random.stateless_categorical(tf.transpose(log_w), 1, tf.cast(pick_seed, tf.int32))[:, 0]
    return tf.gather(tf.transpose(z, [1, 0, 2]), j, axis=1, batch_dims=1)


@register("ais_vae")
class AISVAE(AmortizedModel):
    """AIS training (Ding & Freedman, Algorithm 1): the decoder learns from K annealed-importance-
    weighted HMC samples, the encoder from the reparameterised ELBO, each with its own optimizer.

        decoder surrogate: -sum_k stop(w~_k) log p(x, stop(z_k)),  z_k the end of AIS chain k
        encoder surrogate: -ELBO = -(E_q log p(x|z) - KL(q(z|x) || p(z))), one reparameterised z

    The chains run f_t = q^(1-beta_t) p(x, z)^beta_t, t = 0..T, with one HMC move (L leapfrog steps,
    `tfp.mcmc.HamiltonianMonteCarlo`) per intermediate temperature and, with final_move, one more at
    beta_T = 1. Each move has its own step size (a non-trainable weight, shared by the batch),
    multiplied or divided by `step_size_factor` after every training step according to whether
    that move's acceptance, averaged over the (global) batch, was above `target_accept_prob`.

    Special cases: num_temperatures=1 with final_move=False is IWAE's decoder gradient;
    num_samples=1 with schedule=[0, 1, ..., 1] is Hoffman's (2017) MH-HMC: z ~ q refined by
    HMC moves that target p(z|x), then grad_theta log p(x, z).

    Args:
      num_samples: K chains per example.
      num_temperatures: T, the weight increments (betas 0 = beta_0 < ... < beta_T = 1).
      leapfrog_steps: L per HMC move.
      schedule: "linear" (the paper's), "geometric", "sigmoidal", "mh_hmc" (betas 0, 1, ..., 1) or an
        explicit list of T + 1 betas.
      final_move: make Algorithm 1's optional last move at beta_T (so T moves in all, the paper's
        cost L x K x T); without it there are T - 1.
      initial_step_size, target_accept_prob, step_size_factor, min_step_size, max_step_size:
        the leapfrog step sizes' start value and adaptation.
      **kwargs: see `AmortizedModel`.

    Training reports, besides loss (minus the AIS bound), elbo, kl and recon: `ais_bound` (log of the
    mean AIS weight, a stochastic lower bound on log p(x)), `ess` (effective number of the K
    weights), `accept_rate` (mean HMC acceptance probability) and `step_size` (mean over moves).

    Compile with `optimizer` for the decoder and, optionally, `inference_optimizer` for the encoder
    (default: a copy of `optimizer`'s configuration).

    Example:
      >>> model = tfdgm.models.AISVAE(num_samples=5, num_temperatures=5, leapfrog_steps=5)
      >>> model.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-4),
      ...               inference_optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-4), jit_compile=True)
      >>> model.fit(tfdgm.data.load("fashion_mnist"), epochs=1)  # doctest: +SKIP
      >>> z = model.sample_posterior(x, method="ais")  # Algorithm 2  # doctest: +SKIP
    """

    metric_names = AmortizedModel.metric_names + ("ais_bound", "ess", "accept_rate", "step_size")

    def __init__(self, num_samples=5, num_temperatures=5, leapfrog_steps=5, schedule="linear", final_move=True,
                 initial_step_size=0.05, target_accept_prob=0.65, step_size_factor=1.02, min_step_size=1e-4,
                 max_step_size=1.0, **kwargs):
        super().__init__(num_samples=num_samples, **kwargs)
        if not isinstance(schedule, str):
            schedule = [float(b) for b in schedule]
            num_temperatures = len(schedule) - 1
        if int(num_temperatures) < 1 or int(leapfrog_steps) < 1:
            raise ValueError(f"num_temperatures and leapfrog_steps must be >= 1, got {num_temperatures} and "
                             f"{leapfrog_steps}.")
        if not 0.0 < target_accept_prob < 1.0:
            raise ValueError(f"target_accept_prob must lie in (0, 1), got {target_accept_prob}.")
        if not 0.0 < min_step_size <= initial_step_size <= max_step_size or step_size_factor < 1.0:
            raise ValueError("Need 0 < min_step_size <= initial_step_size <= max_step_size and step_size_factor >= 1.")
        self.num_temperatures = int(num_temperatures)
        self.leapfrog_steps = int(leapfrog_steps)
        self.schedule = schedule
        self.final_move = bool(final_move)
        self.initial_step_size = float(initial_step_size)
        self.target_accept_prob = float(target_accept_prob)
        self.step_size_factor = float(step_size_factor)
        self.min_step_size = float(min_step_size)
        self.max_step_size = float(max_step_size)
        self.betas, self.num_moves = training_betas(schedule, self.num_temperatures, self.final_move)
        # One step size per HMC move; mirrored replicas all assign the same (all-reduced) value.
        self.step_sizes = self.add_weight(
            shape=(max(self.num_moves, 1),), initializer=keras.initializers.Constant(self.initial_step_size),
            trainable=False, name="step_sizes", aggregation="mean")

    def compile(self, optimizer="adam", optimizers=None, inference_optimizer=None, **kwargs):
        """`GenerativeModel.compile`; `inference_optimizer` is short for `optimizers={"q": ...}`:
        the encoder's own optimizer, by default a copy of `optimizer` (which trains the decoder)."""
        optimizers = dict(optimizers or {})
        if inference_optimizer is not None:
            optimizers["q"] = inference_optimizer
        if "q" not in optimizers and "p" not in optimizers:
            optimizer = keras.optimizers.get(optimizer)
            optimizers["q"] = copy_optimizer(optimizer, "inference")
        super().compile(optimizer=optimizer, optimizers=optimizers, **kwargs)

    @property
    def inference_optimizer(self):
        return self._optimizers_by_group.get("q")

    # ------------------------------------------------------------------ training
    def _chains(self, x, seed):
        return run_chains(self, x, self.betas, self.num_samples, leapfrog_steps=self.leapfrog_steps,
                          step_size=self.step_sizes[: max(self.num_moves, 1)], seed=seed)

    def draw(self, x):
        """The K AIS chains per example (not back-propagated: run before the tape opens, so memory
        does not grow with T), and the seed of the encoder's ELBO sample."""
        chain_seed, elbo_seed = tf.unstack(tf.random.experimental.stateless_split(self._next_seed(), 2))
        return self._chains(x, chain_seed), elbo_seed

    def surrogates(self, x, samples=None, training=True):
        """p: -sum_k stop(w~_k) log p(x, z_k) at the chains' end points; q: -ELBO. aux: [M, B] acceptance."""
        trace, elbo_seed = self.draw(x) if samples is None else samples
        log_w = trace.log_weights
        log_pz, log_px_z = self.log_prior_and_likelihood(trace.state, x)
        p_loss = estimators.weighted_log_prob_surrogate(log_w, log_pz + log_px_z)
        out = self.log_weights(x, 1, seed=elbo_seed)
        ais_bound = estimators.log_mean_exp(log_w, axis=0)
        metrics = self.base_metrics(out, -ais_bound)
        batch = tf.shape(ais_bound)
        # With no move nothing is rejected.
        accept = tf.reduce_mean(trace.accept_prob, axis=0) if self.num_moves else tf.ones(batch)
        metrics.update(ais_bound=ais_bound, ess=estimators.effective_sample_size(log_w), accept_rate=accept,
                       step_size=tf.fill(batch, tf.reduce_mean(self.step_sizes)))
        return {"p": p_loss, "q": -metrics["elbo"]}, metrics, trace.accept_prob

    def after_step(self, accept_prob):
        if self.num_moves:
            self._adapt_step_sizes(accept_prob)

    def _adapt_step_sizes(self, accept_prob):
        """One multiplicative update per move toward the target acceptance (mean over the global batch)."""
        accept = global_mean(tf.transpose(accept_prob), axis=0)  # [M]
        self.step_sizes.assign(mcmc.adapt_step_size(
            self.step_sizes, accept, self.target_accept_prob, factor=self.step_size_factor,
            min_step_size=self.min_step_size, max_step_size=self.max_step_size))

    # ------------------------------------------------------------------ Algorithm 2
    def sample_posterior(self, x, method="ais", num_samples=None, seed=None, **kwargs):
        """One draw per example from the implicit posterior q_IS(z|x) or q_AIS(z|x) (Algorithm 2).

        Defaults to the model's K, T, L, schedule and current step sizes; keyword arguments as in
        `sample_implicit_posterior` override them. Returns z [B, latent_dim].
        """
        settings = dict(num_temperatures=self.num_temperatures, leapfrog_steps=self.leapfrog_steps,
                        schedule=self.schedule, final_move=self.final_move)
        settings.update(kwargs)
        if "step_size" not in settings:
            same = all(settings[k] == getattr(self, k) for k in ("num_temperatures", "schedule", "final_move"))
            settings["step_size"] = self.step_sizes[: max(self.num_moves, 1)] if same else tf.reduce_mean(self.step_sizes)
        return sample_implicit_posterior(
            self, x, method, num_samples=self.num_samples if num_samples is None else num_samples,
            seed=self._next_seed(seed), **settings)

    def get_config(self):
        config = super().get_config()
        config.update(num_temperatures=self.num_temperatures, leapfrog_steps=self.leapfrog_steps,
                      schedule=self.schedule, final_move=self.final_move, initial_step_size=self.initial_step_size,
                      target_accept_prob=self.target_accept_prob, step_size_factor=self.step_size_factor,
                      min_step_size=self.min_step_size, max_step_size=self.max_step_size)
        return config
