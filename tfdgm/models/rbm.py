"""Restricted Boltzmann machines trained by contrastive divergence (CD-k) or persistent CD (PCD).

Bernoulli visible units v (the flattened image, D of them) and Bernoulli hidden units h (H):
E(v, h) = -v'Wh - b'v - c'h, and with h summed out the free energy
F(v) = -b'v - sum_j softplus(c_j + v'W_j), so p(v) = exp(-F(v)) / Z.

The gradient of -log p(x) is dF(x)/dw - E_p[dF(v)/dw]. CD-k (Hinton 2002) replaces the model
expectation by v_k, k block-Gibbs steps v -> h -> v from the data; PCD (Tieleman 2008) by
persistent chains advanced k steps per update. Both run in `draw`, before the gradient tape, and
`surrogates` returns F(x) - F(stop(v_k)) per example, whose gradient is the CD/PCD gradient.

`cd_correction=True` adds the term of Bachman & Precup (2015, §5.4, Eq. 45) that CD drops: CD-k is
(approximately) gradient descent on KL(q(tau) || p(tau)) over Gibbs trajectories
tau = (x_0, z_0, ..., x_k), and its exact gradient is the CD term (Eqs. 36-43) plus the
score-function term E_q[grad log q(tau|x_0) log q(tau_x|x_0) / p(tau_x|x_0)]. Up to terms that
depend on x_0 only (zero-mean against the score) the log-ratio is -log q(x_k) - F(x_k), where q(x_k)
is the k-step marginal of the chain started at the data; it is estimated by the minibatch mixture
(1/B) sum_b q(x_k | z_{k-1}^b), which is exact as B grows (see `_correction`).

Momentum is the optimizer's (SGD momentum, Hinton's practical guide §9: 0.5 rising to 0.9); weight
decay is L2 on W added to the surrogate (the guide's §10), so the same optimizer serves both.

References:
  Hinton (2002), Training products of experts by minimizing contrastive divergence.
  Tieleman (2008), Training restricted Boltzmann machines using approximations to the likelihood gradient.
  Hinton (2010), A practical guide to training restricted Boltzmann machines (UTML TR 2010-003).
  Salakhutdinov & Murray (2008), On the quantitative analysis of deep belief networks (AIS for RBMs).
  Bachman & Precup (2015), Variations on the theme of variational inference (§5.4, Eqs. 35-45).
"""
import math

import keras
import numpy as np
import tensorflow as tf

from tfdgm.distributions import discrete
from tfdgm.models import replicas
from tfdgm.models.base import GenerativeModel, register

MAX_ENUMERABLE_UNITS = 20


@register("rbm")
class RBM(GenerativeModel):
    """A Bernoulli-Bernoulli RBM trained by CD-k or PCD-k.

    Args:
      num_hidden: H, hidden units.
      cd_steps: k, block-Gibbs steps of the negative phase per update.
      persistent: PCD: the negative phase continues `num_chains` persistent chains (model state,
        saved with the weights) instead of restarting at the data. Chain row i serves example i
        of the (global) batch, so a batch may have at most `num_chains` examples; with several
        replicas each replica advances the rows of its slice of the global batch, and the rows are
        gathered back after every step, so N replicas keep exactly the chains one device keeps.
      num_chains: persistent chains (PCD only); set it to the batch size.
      cd_correction: add Bachman & Precup's Eq. 45 term (CD-k only, see the module docstring).
      weight_decay: L2 coefficient on W (Hinton's guide: 1e-4 .. 1e-2 times the learning rate's
        scale; the surrogate adds weight_decay / 2 * ||W||^2).
      gibbs_steps: Gibbs steps of `sample` from a base-rate start.
      init_scale: W ~ N(0, init_scale^2) (the guide: 0.01).
    """

    metric_names = ("loss", "free_energy", "free_energy_gap", "recon_error", "pseudo_likelihood")
    has_free_energy = True

    def __init__(self, num_hidden=500, cd_steps=1, persistent=False, num_chains=100, cd_correction=False,
                 weight_decay=0.0, gibbs_steps=200, init_scale=0.01, input_shape=(28, 28, 1), seed=None, **kwargs):
        for name, value, low in (("num_hidden", num_hidden, 1), ("cd_steps", cd_steps, 1),
                                 ("num_chains", num_chains, 1), ("gibbs_steps", gibbs_steps, 0)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
        if weight_decay < 0 or init_scale < 0:
            raise ValueError(f"weight_decay and init_scale must be >= 0, got {weight_decay!r} and {init_scale!r}.")
        if cd_correction and persistent:
            raise ValueError("cd_correction=True corrects CD-k's chains started at the data (Bachman & Precup "
                             "Eq. 45); PCD's persistent chains do not start there. Use persistent=False.")
        super().__init__(input_shape=input_shape, seed=seed, **kwargs)
        self.num_visible = math.prod(self.example_shape)
        self.num_hidden = int(num_hidden)
        self.cd_steps = int(cd_steps)
        self.persistent = bool(persistent)
        self.num_chains = int(num_chains)
        self.cd_correction = bool(cd_correction)
        self.weight_decay = float(weight_decay)
        self.gibbs_steps = int(gibbs_steps)
        self.init_scale = float(init_scale)
        init = keras.initializers.RandomNormal(stddev=self.init_scale, seed=seed)
        self.W = self.add_weight(shape=(self.num_visible, self.num_hidden), initializer=init, name="W")
        self.b_v = self.add_weight(shape=(self.num_visible,), initializer="zeros", name="visible_bias")
        self.b_h = self.add_weight(shape=(self.num_hidden,), initializer="zeros", name="hidden_bias")
        if self.persistent:
            # The same on every replica (each writes the gathered rows of all replicas, after_step).
            self.chains = self.add_weight(shape=(self.num_chains, self.num_visible), initializer="zeros",
                                          trainable=False, name="chains", aggregation="only_first_replica")
        self.built = True

    def parameter_groups(self):
        return {"rbm": [self.W, self.b_v, self.b_h]}

    def validate_data(self, x):
        from tfdgm.data import validate

        return validate(x, likelihood="bernoulli", name="x")  # binary 0/1 data only

    # ------------------------------------------------------------------ energies and conditionals
    def _flat(self, x):
        """Images [..., *input_shape] as visibles [..., D]; flat [..., D] visibles as they are."""
        x = tf.cast(x, tf.float32)
        rank = len(self.example_shape)
        if rank == 1 or tuple(x.shape[-rank:]) != self.example_shape:
            return x
        return tf.reshape(x, tf.concat([tf.shape(x)[: tf.rank(x) - rank], [self.num_visible]], 0))

    def hidden_logits(self, v):
        return tf.matmul(v, self.W) + self.b_h

    def visible_logits(self, h):
        return tf.matmul(h, self.W, transpose_b=True) + self.b_v

    def free_energy(self, x):
        """F(v) = -b'v - sum_j softplus(c_j + v'W_j) of images or flat [..., D] visibles; [...]."""
        v = self._flat(x)
        return -tf.linalg.matvec(v, self.b_v) - tf.reduce_sum(tf.nn.softplus(self.hidden_logits(v)), axis=-1)

    def gibbs_step(self, v, eps):
        """One block-Gibbs step v -> h -> v' from standard normal eps [..., H + D]; (h, v', logits of v')."""
        h = discrete.bernoulli_from_noise(self.hidden_logits(v), eps[..., : self.num_hidden])
        logits = self.visible_logits(h)
        return h, discrete.bernoulli_from_noise(logits, eps[..., self.num_hidden:]), logits

    # ------------------------------------------------------------------ training
    def _replica_offset(self, local):
        """Where this replica's examples start in the global batch (0 on one device)."""
        ctx = replicas.replica_context()
        if ctx is None:
            return tf.constant(0, tf.int32)
        sizes = ctx.all_gather(tf.reshape(local, [1]), axis=0)
        return tf.reduce_sum(sizes[: ctx.replica_id_in_sync_group])

    def draw(self, x):
        """The negative phase, outside the tape: k Gibbs steps from the data (CD) or the chains (PCD).

        All noise is one per-example row [B, k (H + D) + D] (the last D pick the pseudo-likelihood's
        flipped bit), so a replica's noise is its slice of the global batch's under fixed noise.
        """
        v0 = self._flat(x)
        local = tf.shape(v0)[0]
        width = self.cd_steps * (self.num_hidden + self.num_visible)
        eps = discrete._noise(tf.zeros(tf.stack([local, width + self.num_visible])), 1, self._next_seed())[0]
        if self.persistent:
            offset = self._replica_offset(local)
            tf.debugging.assert_less_equal(
                offset + local, self.num_chains,
                message=f"PCD: a batch has more examples than num_chains={self.num_chains} persistent chains; "
                        "set num_chains to at least the batch size.")
            v = tf.stop_gradient(self.chains[offset : offset + local])
        else:
            v = v0
        steps = tf.reshape(eps[:, :width], [-1, self.cd_steps, self.num_hidden + self.num_visible])
        samples = {"flip": eps[:, width:]}
        if self.cd_correction:  # the whole trajectory is needed: unrolled
            xs, zs = [v], []
            for t in range(self.cd_steps):
                h, v, _ = self.gibbs_step(v, steps[:, t])
                xs.append(v)
                zs.append(h)
            samples.update(xs=tf.stop_gradient(tf.stack(xs)), zs=tf.stop_gradient(tf.stack(zs)))
        elif self.cd_steps == 1:  # unrolled is faster for k = 1, a while_loop for k = 10 (BENCHMARKS.md)
            v = self.gibbs_step(v, steps[:, 0])[1]
        else:
            v = tf.while_loop(lambda t, v: t < self.cd_steps, lambda t, v: (t + 1, self.gibbs_step(v, steps[:, t])[1]),
                              (tf.constant(0), v))[1]
        samples["negative"] = tf.stop_gradient(v)
        return samples

    def pseudo_log_likelihood(self, v, eps):
        """D log sigmoid(F(v) - F(v~)) with v~ v with one bit flipped, chosen uniformly per example
        by Gumbel-max on eps [B, D]: an unbiased estimate of the log pseudo-likelihood (Besag 1975)."""
        flip = discrete.categorical_from_noise(tf.zeros_like(v), eps)
        flipped = v + flip - 2.0 * v * flip
        return self.num_visible * tf.math.log_sigmoid(self.free_energy(flipped) - self.free_energy(v))

    def reconstruction_error(self, v):
        """Squared error of the mean-field reconstruction sigmoid(visible_logits(E[h|v])), summed over pixels."""
        mean = tf.sigmoid(self.visible_logits(tf.sigmoid(self.hidden_logits(v))))
        return tf.reduce_sum(tf.square(v - mean), axis=-1)

    def surrogates(self, x, samples=None, training=True):
        v0 = self._flat(x)
        if samples is None:
            samples = self.draw(x)
        f_data, f_model = self.free_energy(v0), self.free_energy(samples["negative"])
        loss = f_data - f_model
        if self.weight_decay:
            loss += 0.5 * self.weight_decay * tf.reduce_sum(tf.square(self.W))
        if self.cd_correction:
            loss += self._correction(samples)
        pll = self.pseudo_log_likelihood(v0, samples["flip"])
        metrics = {"loss": -pll, "free_energy": f_data, "free_energy_gap": f_data - f_model,
                   "recon_error": self.reconstruction_error(v0), "pseudo_likelihood": pll}
        return {"rbm": loss}, metrics, samples["negative"] if self.persistent else None

    def _correction(self, samples):
        """Bachman & Precup's Eq. 45 term as a score-function surrogate, per example [B].

        stop(r_b - baseline_b) * log q(tau_b | x_0b) with r_b = -log q^(x_k^b) - F(x_k^b), the
        trajectory's log q/p up to x_0-only terms; q^(x_k) = (1/B) sum_b' q(x_k | z_{k-1}^b') is the
        minibatch-mixture estimate of the k-step marginal, the baseline the leave-one-out mean of r.
        """
        xs, zs = samples["xs"], samples["zs"]  # [k + 1, B, D], [k, B, H]
        log_q = tf.zeros(tf.shape(xs)[1:2])
        for t in range(self.cd_steps):
            log_q += discrete.independent_bernoulli(self.hidden_logits(xs[t])).log_prob(zs[t])
            log_q += discrete.independent_bernoulli(self.visible_logits(zs[t])).log_prob(xs[t + 1])
        x_k, last_logits = xs[-1], self.visible_logits(zs[-1])  # [B, D], [B', D]
        # log q(x_k^b | z^b') for all pairs: [B, B'].
        pair = tf.matmul(x_k, last_logits, transpose_b=True) - tf.reduce_sum(tf.nn.softplus(last_logits), -1)[None]
        num = tf.cast(tf.shape(x_k)[0], tf.float32)
        reward = -(tf.reduce_logsumexp(pair, axis=1) - tf.math.log(num)) - self.free_energy(x_k)
        reward = tf.stop_gradient(reward)
        baseline = (tf.reduce_sum(reward) - reward) / tf.maximum(num - 1.0, 1.0)
        return tf.stop_gradient(reward - baseline) * log_q

    def after_step(self, aux):
        if not self.persistent:
            return
        rows = tf.cast(aux, self.chains.dtype)
        ctx = replicas.replica_context()
        if ctx is not None:  # every replica writes the same value: all replicas' rows, in batch order
            rows = ctx.all_gather(rows, axis=0)
        self.chains.assign(tf.concat([rows, self.chains[tf.shape(rows)[0]:]], axis=0))

    # ------------------------------------------------------------------ sampling
    def sample(self, num_samples, seed=None):
        """Visible means p(v|h) after `gibbs_steps` block-Gibbs steps of num_samples chains started
        at Bernoulli(sigmoid(b_v)) (the model's own base rates); [N, *input_shape]."""
        seed = self._next_seed(seed)
        n = tf.cast(num_samples, tf.int32)
        v = discrete.bernoulli_from_noise(self.b_v, discrete._noise(tf.zeros(tf.stack([n, self.num_visible])), 1,
                                                                    seed)[0])
        logits = tf.zeros_like(v) + self.b_v

        def body(t, v, logits):
            step_seed = tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), tf.cast(t, tf.int64) + 1)
            eps = discrete._noise(tf.zeros(tf.stack([n, self.num_hidden + self.num_visible])), 1, step_seed)[0]
            _, v, logits = self.gibbs_step(v, eps)
            return t + 1, v, logits

        _, v, logits = tf.while_loop(lambda t, *_: t < self.gibbs_steps, body, (tf.constant(0), v, logits))
        return tf.reshape(tf.sigmoid(logits), tf.concat([[n], self.example_shape], 0))

    # ------------------------------------------------------------------ exact answers (small models)
    def _enumerable(self):
        smaller = min(self.num_visible, self.num_hidden)
        if smaller > MAX_ENUMERABLE_UNITS:
            raise ValueError(f"Exact answers enumerate the smaller layer, which has {smaller} units here; at most "
                             f"{MAX_ENUMERABLE_UNITS} can be enumerated. Use AIS (tfdgm.evaluation.ais_log_partition).")
        return "visible" if self.num_visible <= self.num_hidden else "hidden"

    def _hidden_free_energy(self, h):
        """-log sum_v exp(-E(v, h)) = -c'h - sum_i softplus(b_i + W_i h)."""
        return -tf.linalg.matvec(h, self.b_h) - tf.reduce_sum(tf.nn.softplus(self.visible_logits(h)), axis=-1)

    def exact_log_partition(self):
        """log Z, by enumerating the smaller layer (<= 20 units) with the other summed out analytically."""
        if self._enumerable() == "visible":
            return tf.reduce_logsumexp(-self.free_energy(discrete.enumerate_bernoulli(self.num_visible)))
        return tf.reduce_logsumexp(-self._hidden_free_energy(discrete.enumerate_bernoulli(self.num_hidden)))

    def exact_log_likelihood(self, x):
        """log p(x) = -F(x) - log Z exactly, [B] (small models)."""
        return -self.free_energy(self._flat(x)) - self.exact_log_partition()

    def exact_samples(self, num_samples, seed):
        """Exact draws v ~ p(v), [N, D] flat: by enumeration of v, or of h (h ~ p(h), then v ~ p(v|h))."""
        seed = replicas.to_seed(seed)
        s1, s2 = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        if self._enumerable() == "visible":
            states = discrete.enumerate_bernoulli(self.num_visible)
            index = tf.random.stateless_categorical(-self.free_energy(states)[None], num_samples, s1)[0]
            return tf.gather(states, index)
        states = discrete.enumerate_bernoulli(self.num_hidden)
        h = tf.gather(states, tf.random.stateless_categorical(-self._hidden_free_energy(states)[None], num_samples,
                                                              s1)[0])
        probs = tf.sigmoid(self.visible_logits(h))
        return tf.cast(tf.random.stateless_uniform(tf.shape(probs), s2) < probs, tf.float32)

    # ------------------------------------------------------------------ annealing (tfdgm.evaluation.ais_log_partition)
    def annealed_log_prob(self, v, beta, base_logits):
        """log f_beta(v) on Salakhutdinov & Murray's path from the base-rate model (visible logits a,
        W = 0, H hidden units of logit 0) to the RBM, the joint exp((1 - beta) a'v + beta (b'v + c'h
        + v'Wh)) with h summed out: (1 - beta) a'v + beta b'v + sum_j softplus(beta (c_j + v'W_j)).
        beta = 1 gives -F(v); beta = 0 the base, whose normaliser is 2^H prod_i (1 + e^{a_i})."""
        return (tf.linalg.matvec(v, (1.0 - beta) * base_logits + beta * self.b_v)
                + tf.reduce_sum(tf.nn.softplus(beta * self.hidden_logits(v)), axis=-1))

    def annealed_log_partition_base(self, base_logits):
        """log Z_0 of the path's start (see `annealed_log_prob`)."""
        return tf.reduce_sum(tf.nn.softplus(base_logits)) + self.num_hidden * math.log(2.0)

    def annealed_gibbs_step(self, v, beta, base_logits, uniform):
        """A Gibbs step v -> h -> v' that leaves `annealed_log_prob`'s f_beta invariant:
        h ~ sigmoid(beta (vW + c)), v' ~ sigmoid((1 - beta) a + beta (Wh + b)); uniform [..., H + D]."""
        h = tf.cast(uniform[..., : self.num_hidden] < tf.sigmoid(beta * self.hidden_logits(v)), tf.float32)
        logits = (1.0 - beta) * base_logits + beta * self.visible_logits(h)
        return tf.cast(uniform[..., self.num_hidden:] < tf.sigmoid(logits), tf.float32)

    def set_parameters(self, W, visible_bias, hidden_bias):
        """Loads weights from elsewhere (e.g. scikit-learn's BernoulliRBM: components_.T,
        intercept_visible_, intercept_hidden_)."""
        self.W.assign(np.asarray(W, np.float32))
        self.b_v.assign(np.asarray(visible_bias, np.float32))
        self.b_h.assign(np.asarray(hidden_bias, np.float32))

    def get_config(self):
        config = super().get_config()
        config.update(num_hidden=self.num_hidden, cd_steps=self.cd_steps, persistent=self.persistent,
                      num_chains=self.num_chains, cd_correction=self.cd_correction, weight_decay=self.weight_decay,
                      gibbs_steps=self.gibbs_steps, init_scale=self.init_scale)
        return config
