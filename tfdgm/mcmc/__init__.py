"""MCMC for evaluation and training: HMC kernels, annealing schedules, forward and reverse AIS."""
from tfdgm.mcmc.ais import AISTrace, ais
from tfdgm.mcmc.hmc import acceptance_probability, adapt_step_size, hmc_kernel
from tfdgm.mcmc.schedules import SCHEDULES, annealing_schedule

__all__ = ["AISTrace", "SCHEDULES", "acceptance_probability", "adapt_step_size", "ais", "annealing_schedule",
           "hmc_kernel"]
