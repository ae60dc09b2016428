import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402  (after the environment it reads)

# Two logical CPUs in every test process, so tf.distribute tests can mirror over 2 devices. It
# must happen before TensorFlow initialises its devices, i.e. before any test touches a tensor;
# ops still run on CPU:0 unless a strategy places them, so other tests are unaffected.
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)
