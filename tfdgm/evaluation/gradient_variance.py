"""Variance and signal-to-noise ratio of a model's training gradient, per parameter group.

The gradient a model trains with (`model.compute_gradients(x)`, the very estimator `fit` uses) is
drawn `num_draws` times on one fixed batch with fresh noise each time (each call advances the
model's seed generator; the weights are not touched), and per group we report

  - mean_norm: ||E[g]||, the norm of the mean gradient;
  - variance: tr Cov[g] = sum_i Var[g_i] (unbiased, ddof=1), the total variance;
  - snr_mean, snr_median: the mean and the median over coordinates i of |E[g_i]| / std[g_i], the
    per-parameter signal-to-noise ratio of Rainforth et al. (2018), "Tighter variational bounds are
    not necessarily better" (coordinates whose gradient has zero variance, e.g. unused ones, left out);
  - norm_snr: ||E[g]|| / sqrt(tr Cov[g]), one ratio for the whole group.

So estimators (IWAE vs DReG, Gumbel-softmax vs REINFORCE, ...) can be compared on one model and
batch: `gradient_variance(model, x)["q"]["snr_median"]`.
"""
import numpy as np
import tensorflow as tf

STATISTICS = ("mean_norm", "variance", "snr_mean", "snr_median", "norm_snr")


def _flat(gradients, variables):
    parts = [tf.reshape(tf.zeros_like(v) if g is None else tf.cast(g, tf.float32), [-1])
             for g, v in zip(gradients, variables)]
    return tf.concat(parts, axis=0) if parts else tf.zeros([0])


def gradient_variance(model, x, num_draws=100, seed=0, groups=None, jit_compile=False):
    """{group: {statistic: float}} of `model.compute_gradients(x)` over `num_draws` noise draws.

    Args:
      model: any tfdgm model (a `GenerativeModel`); compiled or not.
      x: one fixed batch [B, ...] (validated by the model where it can).
      num_draws: gradient draws (>= 2). The SNR estimate's relative error is about 1/sqrt(num_draws).
      seed: int: the draws' noise starts from this seed (so the result is reproducible), and the
        model's seed generator is restored afterwards, so training after this call is unchanged.
        None: draws continue the model's own stream (and advance it).
      groups: the parameter groups to report (default: all of `model.group_variables()`).
      jit_compile: compile the gradient with XLA.

    Returns a dict per group of the statistics in the module docstring, plus `num_params`,
    `num_constant` (coordinates with zero variance) and `num_draws`.
    """
    if int(num_draws) < 2:
        raise ValueError(f"num_draws must be >= 2 to estimate a variance, got {num_draws}.")
    if hasattr(model, "validate_data") and isinstance(x, np.ndarray):
        x = model.validate_data(x)
    x = tf.convert_to_tensor(x, tf.float32)
    all_groups = model.group_variables()
    names = list(all_groups) if groups is None else list(groups)
    unknown = sorted(set(names) - set(all_groups))
    if unknown:
        raise ValueError(f"Unknown parameter groups {unknown}; {type(model).__name__} has {sorted(all_groups)}.")

    @tf.function(jit_compile=jit_compile, reduce_retracing=True)
    def draw(x):
        grads = model.compute_gradients(x)[0]
        return {g: _flat(grads[g], all_groups[g]) for g in names}

    state = model.seed_generator.state
    saved = state.numpy()
    if seed is not None:
        state.assign(np.array([int(seed), 0], dtype=saved.dtype))
    try:
        count, mean, m2 = 0, {}, {}
        for _ in range(int(num_draws)):
            values = {g: v.numpy().astype(np.float64) for g, v in draw(x).items()}
            count += 1
            for g, v in values.items():  # Welford: stable when |mean| >> std
                if g not in mean:
                    mean[g], m2[g] = np.zeros_like(v), np.zeros_like(v)
                delta = v - mean[g]
                mean[g] += delta / count
                m2[g] += delta * (v - mean[g])
    finally:
        if seed is not None:
            state.assign(saved)
    results = {}
    for g in names:
        var = m2[g] / (count - 1)
        std = np.sqrt(var)
        varying = std > 0
        snr = np.abs(mean[g][varying]) / std[varying]
        total = float(var.sum())
        norm = float(np.linalg.norm(mean[g]))
        results[g] = {
            "mean_norm": norm,
            "variance": total,
            "snr_mean": float(snr.mean()) if snr.size else float("nan"),
            "snr_median": float(np.median(snr)) if snr.size else float("nan"),
            "norm_snr": norm / np.sqrt(total) if total > 0 else float("inf") if norm > 0 else float("nan"),
            "num_params": int(mean[g].size),
            "num_constant": int((~varying).sum()),
            "num_draws": count,
        }
    return results
