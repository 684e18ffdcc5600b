"""The ``nada`` command starts light: help, argument errors and files it refuses on sight never
import torch (which costs ~2.5 s and ~650 MB before anything useful happens)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Runs the CLI in-process in a fresh interpreter and reports the exit code and whether torch was imported.
_PROBE = ("import json, sys\nfrom nada_core import cli\ntry:\n    rc = cli.main(sys.argv[1:])\n"
          "except SystemExit as e:\n    rc = e.code\nprint(json.dumps({'rc': rc, 'torch': 'torch' in sys.modules}))")


def _run(*args: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, cwd=REPO,
                          timeout=120)
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "stderr": proc.stderr}


@pytest.fixture(scope="module")
def refused(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("refused")
    (d / "notes.txt").write_text("not a model")
    (d / "empty.pt").write_bytes(b"")
    (d / "cut.safetensors").write_bytes(b"\x40\x00\x00\x00\x00\x00\x00\x00" + b'{"a": 1}')  # header cut short
    (d / "junk.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00" + b'{"a": [}')  # not JSON
    return {p.name: p for p in d.iterdir()} | {"missing.pkl": d / "missing.pkl", "folder": d}


def test_help_and_argument_errors_do_not_import_torch():
    for args, rc in ((["--help"], 0), (["info", "--help"], 0), (["sample", "--bogus"], 2), ([], 2)):
        out = _run(*args)
        assert out["rc"] == rc and out["torch"] is False, (args, out)


def test_info_refuses_non_model_files_before_importing_torch(refused):
    for name, path in refused.items():
        out = _run("info", str(path))
        assert out["rc"] == 2 and out["torch"] is False, (name, out)
        lines = out["stderr"].strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("nada info: error: "), (name, lines)
