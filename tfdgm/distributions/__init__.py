"""Tensors -> TFP distributions: posteriors, priors and likelihood heads."""
from tfdgm.distributions.heads import (
    LIKELIHOODS,
    bernoulli_log_prob,
    diagonal_gaussian,
    gaussian_sample,
    likelihood_distribution,
    likelihood_log_prob,
    sample,
    standard_normal,
)

__all__ = [
    "LIKELIHOODS",
    "bernoulli_log_prob",
    "diagonal_gaussian",
    "gaussian_sample",
    "likelihood_distribution",
    "likelihood_log_prob",
    "sample",
    "standard_normal",
]
