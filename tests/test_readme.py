"""The README's Quick start commands are exactly what CI runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)]


def test_quick_start_has_exactly_two_commands_and_ci_runs_them_verbatim():
    commands = _quick_start_commands()
    assert len(commands) == 2, commands
    install, test = commands
    assert "\n" not in install and "\n" not in test
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert install in ci_lines, "README install command not run verbatim by .ci/run"
    assert test in ci_lines, "README test command not run verbatim by .ci/run"
    assert ci_lines.index(install) < ci_lines.index(test)
    assert "pytest" in test and "nada demo" in install


def test_pyproject_declares_the_console_script_and_dependencies():
    import tomllib

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "comfyui-nada"
    assert meta["project"]["scripts"]["nada"] == "nada_core.cli:main"
    deps = " ".join(meta["project"]["dependencies"])
    for dep in ("torch", "open_clip_torch", "safetensors", "numpy", "pillow", "kornia", "tqdm"):
        assert dep in deps
    assert "test" in meta["project"]["optional-dependencies"]
    comfy = meta["tool"]["comfy"]
    assert {"PublisherId", "DisplayName", "Icon"} <= set(comfy)
    reqs = (ROOT / "requirements.txt").read_text()
    for dep in ("open_clip_torch", "safetensors", "kornia", "tqdm"):
        assert dep in reqs
