"""`model.fit` that checks its data first, and fits whole executions into `steps_per_epoch`.

A mixin of `GenerativeModel` (it expects `example_shape`, `validate_data` may be overridden).
"""
import numpy as np
import tensorflow as tf


class CheckedFit:
    """Bad data fails before any training step, with a message that says what to do."""

    def validate_data(self, x):
        """Checks an array before training; returns it as float32. Subclasses add likelihood checks."""
        from tfdgm.data import validate

        return validate(x, likelihood=None, name="x")

    def fit(self, x=None, y=None, check_data=True, **kwargs):
        """`keras.Model.fit`, with the data checked first (`validate_data`): arrays and tensors
        entirely; a tf.data.Dataset not built by `tfdgm.data` (which validates its arrays) by its
        first batch, drawn from a separate iterator (a dataset whose randomness is re-drawn per
        iteration, e.g. `shuffle(reshuffle_each_iteration=True)`, then starts one draw later; pass
        check_data=False to skip the check). An empty dataset is a ValueError."""
        if isinstance(x, (np.ndarray, tf.Tensor)):
            x = self.validate_data(x)
            self._check_example_shape(x.shape[1:])
        elif isinstance(x, tf.data.Dataset):
            spec = x.element_spec[0] if isinstance(x.element_spec, tuple) else x.element_spec
            self._check_example_shape(spec.shape[1:])
            if int(x.cardinality()) == 0:
                raise ValueError("The dataset passed to fit is empty: it yields no batches, so nothing would be "
                                 "trained. Check the data source, take() / filter() and drop_remainder.")
            from tfdgm.data import is_validated

            if check_data and not is_validated(x):
                batch = next(iter(x.take(1)), None)
                if batch is None:
                    raise ValueError("The dataset passed to fit is empty: it yields no batches, so nothing would "
                                     "be trained. Check the data source, take() / filter() and drop_remainder.")
                try:
                    self.validate_data(batch[0] if isinstance(batch, (tuple, list)) else batch)
                except ValueError as error:
                    raise ValueError(f"The first batch of the dataset passed to fit is invalid: {error}") from None
        self._fit_steps_per_execution(kwargs.get("steps_per_epoch"))
        return super().fit(x, y, **kwargs)

    def _fit_steps_per_execution(self, steps_per_epoch):
        """Keras runs whole executions when steps_per_epoch is given (13 steps at 10 per execution
        train 20), so use the largest steps_per_execution that divides steps_per_epoch."""
        spe = getattr(self, "_compiled_steps_per_execution", self.steps_per_execution)
        if steps_per_epoch and steps_per_epoch % spe:
            spe = max(d for d in range(1, spe + 1) if steps_per_epoch % d == 0)
        if spe != self.steps_per_execution:  # each fit starts from what compile() asked for
            self.steps_per_execution = spe
            self.train_function = None  # retrace with the new count

    def _check_example_shape(self, shape):
        shape = tuple(shape)
        if len(shape) != len(self.example_shape) or any(
            d is not None and d != e for d, e in zip(shape, self.example_shape)
        ):
            raise ValueError(
                f"{type(self).__name__} was built for examples of shape {self.example_shape}, but the data "
                f"has examples of shape {shape}. Pass input_shape={shape} when creating the model."
            )
