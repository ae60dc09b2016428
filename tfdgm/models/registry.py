"""The model registry: a model is registered by the `@register(name)` decorator in its own file."""
import keras

_REGISTRY = {}


def register(name):
    """Class decorator: registers a model under `name` and makes it Keras-serialisable."""

    def decorator(cls):
        # The same class again (its module imported under a second name, or reloaded) is fine.
        if name in _REGISTRY and _REGISTRY[name].__qualname__ != cls.__qualname__:
            raise ValueError(f"A model named {name!r} is already registered ({_REGISTRY[name].__name__}).")
        cls = keras.saving.register_keras_serializable(package="tfdgm")(cls)
        cls.registry_name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def registered_models():
    """Returns {name: class} for every registered model."""
    return dict(_REGISTRY)


def get_model_class(name):
    if name not in _REGISTRY:
        raise ValueError(f"Unknown model {name!r}; registered models are {sorted(_REGISTRY)}.")
    return _REGISTRY[name]
