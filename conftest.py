"""Suite-wide pytest settings that must hold before collection (fixtures: tests/conftest.py).

1. The root holds ``__init__.py`` because ComfyUI imports the folder as a custom-node pack. pytest
   would collect the root as a Python package and import that ``__init__.py``, which fails with
   "attempted relative import with no known parent package" when the folder name is not a valid
   identifier (users clone into ``custom_nodes/ComfyUI-NADA``). For the tests the root is a plain
   directory.
2. ``NADA_REQUIRE_COMFYUI=1`` (set by .ci/run on machines that have ComfyUI) turns a skipped
   in-ComfyUI or browser test into a failure: there a skip means the set-up broke.
3. A pytest started in the background by a non-interactive shell inherits SIGINT *ignored*, and so
   would every child it starts; the Ctrl-C tests need the normal handler back.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent

# Test files that run the real ComfyUI (or a browser against it); tests marked ``comfyui`` count too.
COMFYUI_TEST_FILES = frozenset({"test_comfy_pack.py", "test_queue_live.py", "test_frontend.py"})


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
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # children then start with it unignored


def _needs_comfyui(item: pytest.Item) -> bool:
    return item.path.name in COMFYUI_TEST_FILES or item.get_closest_marker("comfyui") is not None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.skipped and os.environ.get("NADA_REQUIRE_COMFYUI") == "1" and _needs_comfyui(item):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = (f"skipped although NADA_REQUIRE_COMFYUI=1 (this machine should run it): {reason}; "
                           f"fix the ComfyUI/Chromium setup in .ci/run, or unset NADA_REQUIRE_COMFYUI")
    return report
