import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402  (after the environment it reads)

# Two logical CPUs in every test process, so tf.distribute tests can mirror over 2 devices. It
# must happen before TensorFlow initialises its devices, i.e. before any test touches a tensor;
# ops still run on CPU:0 unless a strategy places them, so other tests are unaffected.
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)

# Models defined outside the package (a toy objective with three parameter groups, and a model
# without encoder or bound): registering them here, before any test module is collected, puts them
# in every test that covers "all registered models" (tests/harness.py ALL_MODELS).
import tests.custom_model  # noqa: E402,F401
import tests.toy_objective  # noqa: E402,F401
