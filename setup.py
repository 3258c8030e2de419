"""Puts the Alembic migrations and the generated schema files inside the built package.

They live at the top of the source tree (``alembic/``, ``schema/``), where developers and tools
expect them; an installed resmon finds them as package data of ``resmon`` instead
(``resmon.store.alembic_directory``). Everything else is configured in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

#: Source directory -> where it goes inside the built ``resmon`` package.
PACKAGE_DATA_TREES = {"alembic": "resmon/store/migrations", "schema": "resmon/schema"}


class BuildPyWithData(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads the source tree itself
            return
        for source, target in PACKAGE_DATA_TREES.items():
            destination = Path(self.build_lib, target)
            shutil.rmtree(destination, ignore_errors=True)
            shutil.copytree(
                source, destination, ignore=shutil.ignore_patterns("__pycache__", "*.py[co]")
            )

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = list(super().get_outputs(include_bytecode))
        if not self.editable_mode:
            for source, target in PACKAGE_DATA_TREES.items():
                for path in Path(source).rglob("*"):
                    if path.is_file() and "__pycache__" not in path.parts:
                        outputs.append(str(Path(self.build_lib, target, path.relative_to(source))))
        return outputs


setup(cmdclass={"build_py": BuildPyWithData})
