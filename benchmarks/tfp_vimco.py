"""The peer trainer: TFP's own VIMCO (`tfp.vi.monte_carlo_variational_loss` with
`GradientEstimators.VIMCO`) on a tfdgm model's networks and densities, one jit-compiled step."""
import tensorflow as tf
import tensorflow_probability as tfp


def tfp_vimco_trainer(model, optimizer):
    """step(x) -> loss: one Adam step of TFP's VIMCO loss (K = model.num_samples) on model's variables."""
    variables = model.trainable_variables
    optimizer.build(variables)

    @tf.function(jit_compile=True)
    def step(x):
        with tf.GradientTape() as tape:
            q = model.posterior(x)  # batch shape [B]

            def target_log_prob(z):  # z [K, B, D]
                log_pz, log_px_z = model.log_prior_and_likelihood(z, x)
                return log_pz + log_px_z

            loss = tf.reduce_mean(tfp.vi.monte_carlo_variational_loss(
                target_log_prob, q, importance_sample_size=model.num_samples,
                gradient_estimator=tfp.vi.GradientEstimators.VIMCO, seed=tf.cast(model._next_seed(), tf.int32)))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    return step
