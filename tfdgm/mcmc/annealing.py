"""The geometric annealing path from the prior (or q(z|x)) to p(x, z), shared by AIS evaluation
(Wu et al. 2017), BDMC (Grosse et al. 2015) and AIS training.

f_beta(z) = f_0(z)^(1 - beta) p(x, z)^beta with f_0 = p(z) ("prior") or q(z|x) ("encoder"); both
starts are normalised, so AIS along it estimates p(x). What a model must provide is only
`prior()`, `posterior(x)` (for "encoder") and `log_prior_and_likelihood(z, x)`, read through the
capability flags `has_joint` and `has_encoder` (both default True).
"""
import tensorflow as tf

from tfdgm import distributions as dists

STARTS = ("prior", "encoder")


def require(model, capability, needed_by):
    """Raises a ValueError naming `capability` when `model` declares it False (default True)."""
    if not getattr(model, capability, True):
        raise ValueError(f"{needed_by} needs a model with {capability}=True, but {type(model).__name__} has "
                         f"{capability}=False.")


def check_start(model, start):
    """Checks that AIS can start at `start` for this model: a known start and the capabilities it needs."""
    if start not in STARTS:
        raise ValueError(f"Unknown AIS start {start!r}; choose one of {STARTS}.")
    require(model, "has_joint", "AIS (log p(z) + log p(x|z) and a prior sampler)")
    if start == "encoder":
        require(model, "has_encoder", 'AIS from the encoder (start="encoder")')


def annealed_log_prob_fn(model, x, start):
    """(state [C, B, D], beta) -> log f_beta, the geometric path from the prior or q(z|x) to p(x, z)."""
    check_start(model, start)
    if start == "prior":
        def annealed(z, beta):
            log_pz, log_px_z = model.log_prior_and_likelihood(z, x)
            return log_pz + beta * log_px_z
        return annealed
    posterior = model.posterior(x)

    def annealed(z, beta):
        log_qz = posterior.log_prob(z)
        log_pz, log_px_z = model.log_prior_and_likelihood(z, x)
        return log_qz + beta * (log_pz + log_px_z - log_qz)
    return annealed


def initial_state(model, x, start, num_chains, seed):
    """C exact draws per example from the start of the path, p(z) or q(z|x): [C, B, D]."""
    check_start(model, start)
    if start == "encoder":
        return dists.sample(model.posterior(x), num_chains, seed)
    return dists.sample(model.prior(), tf.stack([num_chains, tf.shape(x)[0]]), seed)
