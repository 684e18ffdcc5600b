"""Collection settings for the repository root (the test fixtures live in tests/conftest.py).

The root holds ``__init__.py`` because ComfyUI imports the folder as a custom-node pack. pytest
would then collect the root as a Python package and import that ``__init__.py``, which fails with
"attempted relative import with no known parent package" when the folder name is not a valid
identifier (users clone into ``custom_nodes/ComfyUI-NADA``). For the tests the root is not a
package: it is collected as a plain directory instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent


class _RootIsADirectory:
    """A global plugin (a conftest hook would not be asked: pytest collects a directory with the
    hooks of its *parent* folder, which this file does not cover)."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_collect_directory(self, path: Path, parent: pytest.Collector) -> pytest.Collector | None:
        if path.resolve() == ROOT:
            return pytest.Dir.from_parent(parent, path=path)
        return None  # every other folder: pytest's own rules


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin("nada-root-dir"):
        config.pluginmanager.register(_RootIsADirectory(), "nada-root-dir")
