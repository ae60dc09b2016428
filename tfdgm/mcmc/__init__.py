"""MCMC for evaluation and training: transition kernels, annealing paths and schedules, forward and reverse AIS."""
from tfdgm.mcmc.ais import AISTrace, ais
from tfdgm.mcmc.annealing import STARTS, annealed_log_prob_fn, initial_state
from tfdgm.mcmc.hmc import acceptance_probability, adapt_step_size, hmc_kernel, hmc_kernel_fn, target_log_prob
from tfdgm.mcmc.schedules import SCHEDULES, annealing_schedule

__all__ = ["AISTrace", "SCHEDULES", "STARTS", "acceptance_probability", "adapt_step_size", "ais",
           "annealed_log_prob_fn", "annealing_schedule", "hmc_kernel", "hmc_kernel_fn", "initial_state",
           "target_log_prob"]
