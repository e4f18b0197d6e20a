"""Packaging hook: the wheel carries the course's embedded data.

``data_samples/`` stays the one copy in the repository (top level, where learners look); building
the package copies it into ``qcoder_lib/data_samples/`` so that an installed wheel finds its eval
sets and samples through :func:`qcoder_lib.io.resource_path`. Everything else is in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithDataSamples(build_py):
    """``build_py`` plus a copy of ``data_samples/`` into the built package."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout's data_samples/ directly
        src = Path(__file__).resolve().parent / "data_samples"
        if not src.is_dir():
            raise FileNotFoundError(f"cannot build qcoder_lib: {src} is missing")
        shutil.copytree(src, Path(self.build_lib) / "qcoder_lib" / "data_samples",
                        dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildPyWithDataSamples})
