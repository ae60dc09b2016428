"""Estimators: pure TensorFlow functions of log-weights.

Every objective in the zoo scores K proposals per example with
``log w[k, b] = log p(x_b, z_kb) - log q(z_kb | x_b)``, a tensor of shape ``[K, B]``.
The functions here turn those log-weights into the bound that is reported and the surrogate
losses whose gradients train the model, so a new objective is a new combination of them rather
than a new copy of the likelihood code.
"""
from tfdgm.estimators.bounds import (
    dreg_surrogate,
    effective_sample_size,
    elbo,
    iwae_bound,
    iwae_surrogate,
    log_mean_exp,
    normalized_weights,
    weighted_log_prob_surrogate,
)
from tfdgm.estimators.score_function import (
    nvil_baseline_loss,
    nvil_learning_signal,
    reinforce_surrogate,
    update_moments,
    vimco_leave_one_out_bounds,
    vimco_learning_signals,
    vimco_surrogate,
)
from tfdgm.estimators.reweighted import (
    exact_log_likelihood,
    prior_sampling_bound,
    prior_sampling_surrogate,
    rws_dreg_surrogate,
    sleep_phi_surrogate,
    wake_phi_surrogate,
    wake_sleep_theta_surrogate,
    wake_theta_surrogate,
)

__all__ = [
    "vimco_surrogate",
    "vimco_learning_signals",
    "vimco_leave_one_out_bounds",
    "update_moments",
    "reinforce_surrogate",
    "nvil_learning_signal",
    "nvil_baseline_loss",
    "dreg_surrogate",
    "effective_sample_size",
    "elbo",
    "exact_log_likelihood",
    "iwae_bound",
    "iwae_surrogate",
    "log_mean_exp",
    "normalized_weights",
    "prior_sampling_bound",
    "prior_sampling_surrogate",
    "rws_dreg_surrogate",
    "sleep_phi_surrogate",
    "wake_phi_surrogate",
    "wake_sleep_theta_surrogate",
    "wake_theta_surrogate",
    "weighted_log_prob_surrogate",
]
