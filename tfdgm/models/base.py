"""`GenerativeModel`, the base of every objective, and the model registry.

A model's whole job is `surrogates(x, samples) -> ({group: per-example loss [B]}, metrics, aux)`.
The base owns everything else, correct under `tf.distribute`:

- named parameter groups (`parameter_groups()`, e.g. p, q, baseline), each with its own optimizer;
  every trainable variable belongs to exactly one group, checked at compile;
- one `train_step`: `draw(x)` outside the gradient tape (MCMC chains, dreamed data, negative
  phases: nothing there is differentiated, so nothing of it is kept for the backward pass), then one
  tape over `surrogates`, each group's gradient of its own loss summed over the replica's examples
  and divided by the *global* batch size, each group's optimizer applied, then `after_step(aux)`
  for state not learned by gradient (step sizes, persistent chains, running statistics);
- metrics the model declares (`metric_names`), as per-example values, so Keras's cross-replica sums
  of (total, count) give global means; a step counter for schedules; replica-distinct seeds;
- capability flags (`has_encoder`, `has_posterior`, `has_bound`, `has_joint`, `has_continuous_latents`,
  `has_free_energy`) that the
  CLI, evaluation, export and the test harness consult instead of a list of model names.
"""
import inspect
import warnings

import keras
import tensorflow as tf

from tfdgm.models import replicas
from tfdgm.models import towers as towers_lib
from tfdgm.models.fitting import CheckedFit
from tfdgm.models.registry import get_model_class, register, registered_models  # noqa: F401  (re-exported)
from tfdgm.models.replicas import average_loss, global_mean, to_seed  # noqa: F401  (re-exported)

DEFAULT_STEPS_PER_EXECUTION = 10


def copy_optimizer(optimizer, suffix):
    """A fresh optimizer with `optimizer`'s configuration (not its state), named `<name>_<suffix>`."""
    template = keras.optimizers.get(optimizer)
    return type(template).from_config(dict(template.get_config(), name=f"{template.name}_{suffix}"))


def _step_tensors(*structures):
    """The tensors in nested structures (composite tensors' components), for control dependencies."""
    return [t for t in tf.nest.flatten(structures, expand_composites=True) if tf.is_tensor(t)]


class GenerativeModel(CheckedFit, keras.Model):
    """Base class of every tfdgm model: parameter groups, one train_step, capability flags.

    Subclasses implement `parameter_groups()`, `surrogates(x, samples, training)` and `sample(n,
    seed)`; optionally `draw(x)`, `after_step(aux)` and `compute_gradients(x)` (when one backward
    pass can serve several groups faster than one pass per group, as in DReG).

    Args:
      input_shape: shape of one example, e.g. (28, 28, 1).
      seed: seeds the model's `keras.random.SeedGenerator` (all training noise) and, for networks
        the model builds itself, their initial weights. For anything else (user networks built
        outside, the order of a tf.data shuffle) use `keras.utils.set_random_seed`.
    """

    registry_name = None
    metric_names = ("loss",)
    has_encoder = False  # encode(x), reconstruct(x), and posterior(x) where has_posterior
    has_bound = False  # log_likelihood_bound(x, num_samples, seed), a lower bound on log p(x)
    has_joint = False  # prior(), log_prior_and_likelihood(z, x), sample_joint: AIS and BDMC
    has_continuous_latents = False  # active units, KL per dimension, mutual information
    # free_energy(x): the unnormalised -log p*(x) (an RBM's); log p(x) = -F(x) - log Z needs log Z,
    # which `tfdgm.evaluation.ais_log_partition` estimates (`tfdgm evaluate --method ais`).
    has_free_energy = False
    # Each example's draw(x) and surrogates(x) depend on that example alone and aux is None, so a
    # batch may be split into towers that train_step runs side by side (see `compile(towers=)`).
    splits_by_example = False
    not_configurable = ()  # constructor arguments that are objects, not config fields

    @property
    def has_posterior(self):
        """posterior(x), q(z|x) as a distribution: every model with an encoder, unless it says
        otherwise (a denoising autoencoder's encoder is a deterministic map with no density)."""
        return self.has_encoder

    def __init__(self, input_shape=(28, 28, 1), seed=None, **kwargs):
        super().__init__(**kwargs)
        self.example_shape = tuple(int(d) for d in input_shape)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="seed_generator")
        # Optimizer steps taken; schedules (warm-up, temperatures) read it, not optimizer.iterations.
        self.step_counter = self.add_weight(shape=(), dtype="int64", initializer="zeros", trainable=False,
                                            name="step_counter", aggregation="only_first_replica")
        self.trackers = {name: keras.metrics.Mean(name=name) for name in self.metric_names}
        self._optimizers_by_group = {}

    @classmethod
    def default_config(cls):
        """{constructor argument: default} of this class and its bases: what `config.model` holds.

        Declared once, by the constructors' signatures; `input_shape` (from the data) and the
        arguments in `not_configurable` (network objects) are left out.
        """
        defaults = {}
        for klass in reversed(cls.__mro__):
            if "__init__" not in vars(klass) or not issubclass(klass, GenerativeModel):
                continue
            for name, param in inspect.signature(klass.__init__).parameters.items():
                if (name in ("self", "input_shape") or name in cls.not_configurable
                        or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL)):
                    continue
                if param.default is not inspect.Parameter.empty:
                    value = param.default
                    defaults[name] = list(value) if isinstance(value, tuple) else value
        return defaults

    # ------------------------------------------------------------------ parameter groups
    def parameter_groups(self):
        """{group name: [trainable variables]}; every trainable variable in exactly one group."""
        return {"all": list(self.trainable_variables)}

    def _checked_groups(self):
        groups = {name: list(variables) for name, variables in self.parameter_groups().items()}
        owner = {}
        for group, variables in groups.items():
            for v in variables:
                if id(v) in owner and owner[id(v)] != group:
                    raise ValueError(f"Variable {v.path!r} is in two parameter groups of {type(self).__name__}: "
                                     f"{owner[id(v)]!r} and {group!r}.")
                owner[id(v)] = group
        orphans = [v.path for v in self.trainable_variables if id(v) not in owner]
        if orphans:
            raise ValueError(
                f"{type(self).__name__} has trainable variables in no parameter group: {orphans}. They would "
                f"never be trained: add them to a group in parameter_groups() (groups: {sorted(groups)}), or "
                "make them non-trainable.")
        return groups

    def group_variables(self):
        """`parameter_groups()` as fixed (and checked) at compile; checked now if not compiled."""
        return getattr(self, "_groups", None) or self._checked_groups()

    @property
    def optimizers_by_group(self):
        """{parameter group: optimizer} after compile (groups may share one); `model.optimizer` is
        the first group's."""
        return dict(self._optimizers_by_group)

    def compile(self, optimizer="adam", optimizers=None, towers="auto", **kwargs):
        """`keras.Model.compile` with an optimizer per parameter group.

        `optimizer` is the one optimizer of every group not named in `optimizers` (as in a plain
        Keras model, its clipping and schedules then see those groups together);
        `optimizers={"q": ...}` gives a group an optimizer of its own (see `copy_optimizer`).
        Several optimizer steps per compiled call (`steps_per_execution`, default 10) amortise the
        per-step dispatch, which dominates small steps on CPU. With several replicas (other than on
        TPU) steps_per_execution is 1 and XLA is off; see the comment below.

        `towers` splits each training batch into that many parts whose forward and backward passes
        are independent until their gradients are averaged, so TensorFlow runs them side by side:
        on a CPU, small ops leave one of two intra-op threads idle much of the time, and two towers
        keep both cores busy (+15-30% at K = 5 and 50, `benchmarks/cores.py`). "auto" is 2 for
        models that split by example (`splits_by_example`) on a machine with several CPU cores, one
        replica and no accelerator, else 1. The towers draw their own noise, so a run with another
        tower count is a different (equally valid) random stream; pass an int to pin it.
        """
        groups = self._checked_groups()
        optimizers = dict(optimizers or {})
        unknown = sorted(set(optimizers) - set(groups))
        if unknown:
            raise ValueError(f"optimizers given for unknown parameter groups {unknown}; {type(self).__name__} "
                             f"has groups {sorted(groups)}.")
        strategy = self.distribute_strategy
        if strategy.num_replicas_in_sync > 1 and not isinstance(strategy, tf.distribute.TPUStrategy):
            # Keras 3.15 / TF 2.21 with several replicas: XLA compiles the whole multi-replica step
            # and cannot reach variables on other devices, and the steps_per_execution > 1 loop
            # fails ("You must feed a value for placeholder"), for plain Keras models too.
            for key, value in (("jit_compile", False), ("steps_per_execution", 1)):
                if kwargs.get(key) not in (value, None, "auto"):
                    warnings.warn(f"{key}={kwargs[key]} is not supported with {type(strategy).__name__} over "
                                  f"{strategy.num_replicas_in_sync} replicas; using {key}={value}.", stacklevel=2)
                kwargs[key] = value
        kwargs.setdefault("steps_per_execution", DEFAULT_STEPS_PER_EXECUTION)
        object.__setattr__(self, "towers", towers_lib.resolve(self, towers))
        named = {group: keras.optimizers.get(opt) for group, opt in optimizers.items()}
        shared = None if set(named) == set(groups) else keras.optimizers.get(optimizer)
        by_group = {group: named.get(group, shared) for group in groups}
        super().compile(optimizer=next(iter(by_group.values())), **kwargs)
        self._compiled_steps_per_execution = self.steps_per_execution
        # Build each optimizer now on all its variables, so every path that restores optimizer
        # state (load_model, load_weights, checkpoints) finds the same slots.
        for opt, variables in self._variables_by_optimizer(by_group, groups):
            opt.build(variables)
        self._optimizers_by_group = by_group
        # Not through Keras's __setattr__: it would adopt the listed variables as the model's own
        # and reorder trainable_variables.
        object.__setattr__(self, "_groups", groups)
        object.__setattr__(self, "_compile_optimizers", (shared, named))

    @staticmethod
    def _variables_by_optimizer(by_group, values_by_group):
        """[(optimizer, values of all its groups, in group order)], one entry per distinct optimizer."""
        merged = {}
        for group, opt in by_group.items():
            merged.setdefault(id(opt), (opt, []))[1].extend(values_by_group[group])
        return list(merged.values())

    def get_compile_config(self):
        config = super().get_compile_config()
        if config and getattr(self, "_compile_optimizers", None):
            shared, named = self._compile_optimizers
            config["optimizer"] = keras.saving.serialize_keras_object(shared or next(iter(named.values())))
            config["optimizers"] = {g: keras.saving.serialize_keras_object(o) for g, o in named.items()}
        return config

    def compile_from_config(self, config):
        # Keras skips re-compiling on load when compile() is overridden: restore every group's
        # optimizer (their states are then loaded into the slots compile built).
        self.compile(**keras.saving.deserialize_keras_object(config))

    # ------------------------------------------------------------------ training
    def draw(self, x):
        """Samples computed before the gradient tape opens (not differentiated); default None."""
        return None

    def surrogates(self, x, samples=None, training=True):
        """({group: per-example loss [B]}, {metric: per-example value [B]}, aux)."""
        raise NotImplementedError(f"{type(self).__name__} must implement surrogates(x, samples, training).")

    def after_step(self, aux):
        """Updates state that is not learned by gradient, after the optimizers' step."""

    def shared_loss(self, loss):
        """{group: loss} for every group: one surrogate trains all parameters."""
        return {group: loss for group in self.parameter_groups()}

    def compute_gradients(self, x):
        """({group: gradients aligned with its variables}, metrics, aux).

        Groups whose surrogate is the same tensor share one backward pass.
        """
        groups = self.group_variables()
        samples = self.draw(x)
        with tf.GradientTape(persistent=True) as tape:
            losses, metrics, aux = self.surrogates(x, samples, training=True)
            missing, extra = sorted(set(groups) - set(losses)), sorted(set(losses) - set(groups))
            if missing or extra:
                raise ValueError(f"{type(self).__name__}.surrogates returned losses for groups {sorted(losses)}, "
                                 f"but its parameter groups are {sorted(groups)}.")
            shared = {}
            for group in groups:
                shared.setdefault(id(losses[group]), (losses[group], []))[1].append(group)
            scaled = [(average_loss(loss), names) for loss, names in shared.values()]
        grads = {}
        for loss, names in scaled:
            variables = [v for g in names for v in groups[g]]
            flat = tape.gradient(loss, variables)
            for g in names:
                grads[g], flat = flat[: len(groups[g])], flat[len(groups[g]):]
        del tape
        return grads, metrics, aux

    def train_step(self, data):
        x = self._unpack(data)
        grads, metrics, aux = towers_lib.compute_gradients(self, x)
        by_optimizer = zip(self._variables_by_optimizer(self._optimizers_by_group, grads),
                           self._variables_by_optimizer(self._optimizers_by_group, self.group_variables()))
        # Every variable read of this step must come before any optimizer write. TensorFlow orders a
        # read before a later write of the same variable by a control edge, but Grappler's dependency
        # optimizer drops that edge as "redundant" when the read reaches the write only through the
        # optimizer's IdentityN over *all* gradients (Keras's gradient all-reduce), and then removes
        # the IdentityN, leaving no path: a read whose value feeds only other variables' gradients or
        # the metrics (the wake phase's q(z|x) in wake-sleep, the dream's p(x|z)) could then see
        # this step's update (TF 2.21, Keras 3.15). Making the optimizer's ops wait for everything
        # the step computed restores the order (the IdentityN then keeps control inputs and stays);
        # tests/test_base.py checks the optimized graph.
        with tf.control_dependencies(_step_tensors(grads, metrics, aux)):
            for (optimizer, gradients), (_, variables) in by_optimizer:
                optimizer.apply_gradients(zip(gradients, variables))
        self.after_step(aux)
        self.step_counter.assign_add(1)
        return self._update_metrics(metrics)

    def test_step(self, data):
        x = self._unpack(data)
        _, metrics, _ = self.surrogates(x, self.draw(x), training=False)
        return self._update_metrics(metrics)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def _update_metrics(self, metrics):
        missing = [name for name in self.trackers if name not in metrics]
        if missing:
            raise ValueError(f"{type(self).__name__} declares metrics {missing} that surrogates() did not return.")
        for name, tracker in self.trackers.items():
            tracker.update_state(metrics[name])
        return replicas.step_logs({name: tracker.result() for name, tracker in self.trackers.items()})

    def _unpack(self, data):
        x = data[0] if isinstance(data, (tuple, list)) else data
        return tf.cast(x, tf.float32)

    def _next_seed(self, seed=None):
        """An explicit seed as given, or the generator's next seed made distinct per replica."""
        if seed is not None:
            return to_seed(seed)
        return replicas.replica_seed(to_seed(self.seed_generator.next()))

    # ------------------------------------------------------------------ generation and saving
    def sample(self, num_samples, seed=None):
        """Examples drawn from the model, [N, *input_shape]."""
        raise NotImplementedError(f"{type(self).__name__} must implement sample(num_samples, seed).")

    def get_config(self):
        config = super().get_config()
        config.update(input_shape=list(self.example_shape), seed=self.seed)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def export(self, filepath, format="tf_saved_model", verbose=True, **kwargs):
        """Writes a SavedModel whose signatures follow the capability flags (see `tfdgm.export`).

        Loading it needs only TensorFlow: `tf.saved_model.load(filepath).sample(...)`.
        """
        if format != "tf_saved_model":
            return super().export(filepath, format=format, verbose=verbose, **kwargs)
        from tfdgm.export import export_saved_model

        return export_saved_model(self, filepath, verbose=verbose)
