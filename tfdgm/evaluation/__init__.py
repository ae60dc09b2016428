"""Evaluation: log-likelihood estimates with standard errors (IWAE, AIS, BDMC)."""
from tfdgm.evaluation.ais import AISResult, ais_log_likelihoods, ais_nll
from tfdgm.evaluation.bdmc import BDMCResult, bdmc
from tfdgm.evaluation.iwae import iwae_log_likelihoods, iwae_nll

__all__ = ["AISResult", "BDMCResult", "ais_log_likelihoods", "ais_nll", "bdmc", "iwae_log_likelihoods", "iwae_nll"]
