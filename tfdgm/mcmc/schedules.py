"""Annealing schedules: the inverse temperatures 0 = beta_0 < ... < beta_T = 1 of AIS.

The intermediate targets are f_t(z) = f_0(z)^(1 - beta_t) f_T(z)^beta_t (the geometric path);
the schedule only decides where along that path the T transitions are spent.
"""
import numpy as np

SCHEDULES = ("linear", "geometric", "sigmoidal")


def annealing_schedule(schedule="sigmoidal", num_steps=1000, *, min_beta=1e-4, sigmoid_delta=4.0):
    """Returns betas, a float64 array of num_steps + 1 values from 0 to 1.

    Args:
      schedule: "linear"; "geometric" (0 then geomspace(min_beta, 1, num_steps): most steps at low
        beta, where the log-likelihood term changes the target fastest); "sigmoidal" (Grosse et al.
        2015, BDMC: beta ~ sigmoid(delta * (2t/T - 1)) rescaled to [0, 1], dense at both ends);
        or an explicit array of betas, checked to run monotonically from 0 to 1.
      num_steps: T, the number of weight increments (ignored for an explicit array).
    """
    if not isinstance(schedule, str):
        return _checked(np.asarray(schedule, np.float64))
    if schedule not in SCHEDULES:
        raise ValueError(f"Unknown annealing schedule {schedule!r}; choose one of {SCHEDULES} or pass an array of betas.")
    num_steps = int(num_steps)
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}.")
    if schedule == "linear":
        betas = np.linspace(0.0, 1.0, num_steps + 1)
    elif schedule == "geometric":
        if not 0.0 < min_beta < 1.0:
            raise ValueError(f"min_beta must lie in (0, 1), got {min_beta}.")
        betas = np.concatenate([[0.0], np.geomspace(min_beta, 1.0, num_steps)])
    else:
        s = 1.0 / (1.0 + np.exp(-sigmoid_delta * (2.0 * np.arange(num_steps + 1) / num_steps - 1.0)))
        betas = (s - s[0]) / (s[-1] - s[0])
    betas[0], betas[-1] = 0.0, 1.0  # exact end points despite round-off
    return _checked(betas)


def _checked(betas):
    if betas.ndim != 1 or len(betas) < 2:
        raise ValueError(f"An annealing schedule needs at least two betas (0 and 1); got shape {betas.shape}.")
    if not np.all(np.isfinite(betas)):
        raise ValueError("The annealing schedule contains NaN or inf.")
    if betas[0] != 0.0 or betas[-1] != 1.0:
        raise ValueError(f"An annealing schedule must start at beta=0 and end at beta=1; got {betas[0]} ... {betas[-1]}.")
    if np.any(np.diff(betas) < 0):
        raise ValueError("An annealing schedule must be non-decreasing in beta.")
    return betas
