"""Ships `conf/` and `launchers/` inside the wheel: they stay at the checkout's top level (the
project's layout names them there), so the build copies them into the package, where an
installed r1exp looks for them (r1exp/resources.py). The rest of the metadata: pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED_DIRS = ("conf", "launchers")


class BuildPyWithConfigs(build_py):
    def run(self):
        super().run()
        # An editable install reads them from the checkout; copies would only go stale.
        if self.editable_mode:
            return
        for name in SHIPPED_DIRS:
            shutil.copytree(Path(name), Path(self.build_lib) / "r1exp" / name, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildPyWithConfigs})
