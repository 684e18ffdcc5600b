"""The test set-up itself: hyphenated checkouts collect, and CI turns ComfyUI skips into failures."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pytest(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in ("NADA_REQUIRE_COMFYUI", "PYTEST_ADDOPTS")}
    full_env.update(env)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=cwd,
                          env=full_env, capture_output=True, text=True, timeout=120)


def test_checkout_named_with_a_hyphen_collects_its_tests(tmp_path):
    # Like custom_nodes/ComfyUI-NADA: a root __init__.py with a relative import (a ComfyUI pack),
    # which pytest must not import as a package.
    root = tmp_path / "Some-Pack"
    (root / "tests").mkdir(parents=True)
    (root / "__init__.py").write_text("from .nodes import NODE_CLASS_MAPPINGS\n")
    shutil.copy(ROOT / "conftest.py", root / "conftest.py")
    (root / "tests" / "helper.py").write_text("VALUE = 3\n")
    (root / "tests" / "test_one.py").write_text("from tests.helper import VALUE\n\n"
                                                "def test_value():\n    assert VALUE == 3\n")
    done = _pytest(["tests"], cwd=root)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
    # Without the root conftest the same layout fails to collect: the check above is not vacuous.
    (root / "conftest.py").unlink()
    failed = _pytest(["tests"], cwd=root)
    assert failed.returncode != 0 and "relative import" in failed.stdout


def test_comfyui_skips_fail_only_when_ci_requires_comfyui(tmp_path):
    args = ["tests/test_frontend.py", "tests/test_comfy_pack.py", "-k", "cache or startup or palette or canvas"]
    missing = str(tmp_path / "no-comfyui")
    relaxed = _pytest(args, cwd=ROOT, COMFYUI_ROOT=missing)
    assert relaxed.returncode == 0, relaxed.stdout  # 5 would mean nothing was selected
    assert "skipped" in relaxed.stdout.splitlines()[-1] and "error" not in relaxed.stdout.splitlines()[-1]
    strict = _pytest(args, cwd=ROOT, COMFYUI_ROOT=missing, NADA_REQUIRE_COMFYUI="1")
    assert strict.returncode != 0
    assert "skipped although NADA_REQUIRE_COMFYUI=1" in strict.stdout
    assert "skipped" not in strict.stdout.splitlines()[-1]  # every one of them became an error
