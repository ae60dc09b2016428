"""Evaluation: log-likelihood estimates with standard errors."""
from tfdgm.evaluation.iwae import iwae_log_likelihoods, iwae_nll

__all__ = ["iwae_log_likelihoods", "iwae_nll"]
