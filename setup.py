from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="scipion-em-blush",
    version="0.1.0",
    description="Blush regularization (denoiser prior) for cryo-EM refinement in Scipion",
    long_description=Path("README.md").read_text(),
    long_description_content_type="text/markdown",
    license="GPLv3",
    python_requires=">=3.9",
    packages=find_packages(),
    package_data={"blush_scipion": ["protocols.conf", "data/*", "templates/*"]},
    install_requires=[
        "torch>=2.1",
        "numpy",
        "scipy",
        "mrcfile",
        "starfile",
        "emtable",
        "gemmi",
        "tqdm",
        "safetensors",
        "scipion-pyworkflow>=3.0",
        "scipion-em>=3.0",
    ],
    entry_points={
        "pyworkflow.plugin": ["blush_scipion = blush_scipion"],
        "console_scripts": [
            "blush = blush_scipion.engine.cli:main",
            "relion_python_blush = blush_scipion.engine.cli.relion_hook:relion_python_blush_entry",
        ],
    },
)
