"""Tensors -> TFP distributions: posteriors, priors and likelihood heads.

`likelihoods` holds the pluggable p(x|z) layers (`get_likelihood("gaussian")`); the string-keyed
functions of `heads` stay for code that has not moved to them.
"""
from tfdgm.distributions.discrete import (
    DISCRETE_PRIORS,
    BernoulliPrior,
    CategoricalPrior,
    enumerate_bernoulli,
    independent_bernoulli,
    one_hot_categorical,
)
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
from tfdgm.distributions.likelihoods import (
    LIKELIHOOD_NAMES,
    BernoulliLikelihood,
    DiscretizedLogisticLikelihood,
    GaussianLikelihood,
    Likelihood,
    PredictedScaleGaussianLikelihood,
    get_likelihood,
)
from tfdgm.distributions.priors import PRIORS, LearnedGaussianPrior, StandardNormalPrior, get_prior

__all__ = [
    "DISCRETE_PRIORS",
    "BernoulliPrior",
    "CategoricalPrior",
    "enumerate_bernoulli",
    "independent_bernoulli",
    "one_hot_categorical",
    "PRIORS",
    "LearnedGaussianPrior",
    "StandardNormalPrior",
    "get_prior",
    "LIKELIHOOD_NAMES",
    "PredictedScaleGaussianLikelihood",
    "BernoulliLikelihood",
    "DiscretizedLogisticLikelihood",
    "GaussianLikelihood",
    "Likelihood",
    "get_likelihood",
    "LIKELIHOODS",
    "bernoulli_log_prob",
    "diagonal_gaussian",
    "gaussian_sample",
    "likelihood_distribution",
    "likelihood_log_prob",
    "sample",
    "standard_normal",
]
