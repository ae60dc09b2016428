"""Evaluation: log-likelihood estimates with standard errors (IWAE, AIS, BDMC) and latent diagnostics."""
from tfdgm.evaluation.ais import DEFAULT_AIS, AISResult, ais_log_likelihoods, ais_nll
from tfdgm.evaluation.bdmc import BDMCResult, bdmc
from tfdgm.evaluation.diagnostics import (
    active_units,
    kl_per_dimension,
    latent_diagnostics,
    mutual_information,
    posterior_statistics,
)
from tfdgm.evaluation.gradient_variance import gradient_variance
from tfdgm.evaluation.iwae import iwae_log_likelihoods, iwae_nll
from tfdgm.evaluation.partition import (
    PartitionResult,
    ais_log_partition,
    base_rate_logits,
    free_energy_log_likelihoods,
    free_energy_nll,
    sm_schedule,
)

__all__ = [
    "AISResult", "BDMCResult", "DEFAULT_AIS", "PartitionResult", "active_units", "ais_log_likelihoods", "ais_nll",
    "ais_log_partition", "base_rate_logits", "bdmc", "free_energy_log_likelihoods", "free_energy_nll", "gradient_variance",
    "sm_schedule",
    "iwae_log_likelihoods", "iwae_nll", "kl_per_dimension", "latent_diagnostics", "mutual_information",
    "posterior_statistics",
]
