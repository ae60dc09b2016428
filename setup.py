"""tfdgm: a TensorFlow/Keras 3 model zoo for deep latent-variable generative models."""
from setuptools import find_packages, setup

setup(
    name="tfdgm",
    version="0.1.0",
    description="Deep latent-variable generative models (VAE, IWAE, DReG, ...) trained with keras.Model.fit",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["tfdgm", "tfdgm.*"]),
    # The preset index (names -> files and sha256) ships with the package; the presets' files are
    # in the repository's zoo/ and are fetched from TFDGM_ZOO_URL by installs without it.
    package_data={"tfdgm.zoo": ["index.json"]},
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.18",
        "tensorflow-probability>=0.25",
        # TFP checks at import time that tf_keras is importable, even though tfdgm uses Keras 3.
        "tf-keras",
        "keras>=3",
        "tensorflow-datasets",
        # tfds imports it lazily when it downloads or prepares a data set.
        "importlib_resources",
        "tensorboard",
        "absl-py",
        "ml-collections",
        "matplotlib",
        "numpy",
    ],
    extras_require={"test": ["pytest", "pytest-xdist"]},
    entry_points={"console_scripts": ["tfdgm=tfdgm.cli:run"]},
)
