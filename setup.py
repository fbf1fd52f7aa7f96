"""segjax: semantic, instance and panoptic segmentation in JAX/Flax.

Version ranges are the ones tested: Python 3.11 with jax 0.10 (CPU, CI) and Python 3.12 with
jax 0.11, flax 0.12.10, orbax-checkpoint 0.12.4 (GPU).
"""
from setuptools import find_packages, setup

_TF = "tensorflow{}>=2.20,<2.22"
_LINUX_X86 = "platform_system == 'Linux' and platform_machine == 'x86_64'"
_NOT_LINUX_X86 = "platform_system != 'Linux' or platform_machine != 'x86_64'"

setup(
    name="segjax",
    version="0.1.0",
    description="Semantic, instance and panoptic segmentation in JAX/Flax, from one backbone.",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.14",
    packages=find_packages(include=["segjax", "segjax.*"]),
    install_requires=[
        "jax>=0.10.0,<0.12",
        "flax>=0.12.4,<0.13",
        "optax>=0.2.5,<0.3",
        "orbax-checkpoint>=0.12.4,<0.13",
        # The CPU build is enough: TensorFlow only feeds data, JAX does the compute.
        _TF.format("-cpu") + "; " + _LINUX_X86,
        _TF.format("") + "; " + _NOT_LINUX_X86,
        "tensorflow-datasets>=4.9.9,<4.10",
        "importlib_resources>=6",  # tfds imports it without declaring it
        "ml-collections>=1.0,<2",
        "einops>=0.8,<0.9",
        "absl-py>=2.1,<3",
        "numpy>=1.26,<3",
        "tensorboardX>=2.6,<3",
        "pycocotools>=2.0.7,<3",
        "matplotlib>=3.8,<4",
        "pillow>=10,<14",
        "safetensors>=0.4,<1",  # weights files; PyTorch only to read a .pth, never a dependency
    ],
    # The releases CI has run, so that a new one cannot break a fresh install unseen: widen a bound
    # once the suite passes with the release past it. cityscapesscripts is the oracle: its
    # pixel-level and COCO panoptic evaluators rescore segjax's files.
    extras_require={"test": ["pytest>=9.0,<9.3", "pytest-xdist>=3.8,<3.9", "cityscapesscripts>=2.3,<2.4"]},
)
