"""Where the real ComfyUI is and whether it can run here: one answer for every test that needs it.

Used by tests/comfy_server.py (ComfyUI servers on loopback ports), tests/comfy_harness.py (ComfyUI
driven in a worker process) and, through them, the pack, queue and front-end tests. CI sets
``COMFYUI_ROOT`` (see .ci/run); a user's default is ``~/ComfyUI``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

# Files of a ComfyUI checkout the harnesses use (main.py for servers, the rest for the in-process worker).
COMFY_FILES = ("main.py", "execution.py", "nodes.py", "folder_paths.py", "requirements.txt")
# Modules ComfyUI v0.8 imports while booting (checked first, so a test skips with a clear reason
# instead of failing on a half-started server).
COMFY_REQUIREMENTS = ("torch", "aiohttp", "yaml", "safetensors", "einops", "PIL", "sqlalchemy", "alembic",
                      "torchsde", "spandrel", "kornia", "av", "comfyui_frontend_package")


def comfy_root() -> Path:
    """The ComfyUI checkout to run: ``$COMFYUI_ROOT``, else ``~/ComfyUI``."""
    return Path(os.environ.get("COMFYUI_ROOT", "~/ComfyUI")).expanduser()


def unavailable_reason(root: Path | None = None) -> str | None:
    """Why the real ComfyUI cannot be used here, as one line with the fix (``None`` when it can)."""
    root = Path(root) if root is not None else comfy_root()
    for name in COMFY_FILES:
        if not (root / name).is_file():
            return (f"ComfyUI not found at {root} (no {name}); set COMFYUI_ROOT to a ComfyUI v0.8 checkout "
                    f"(on our machines: ../shared/tools/comfyui-setup)")
    missing = [m for m in COMFY_REQUIREMENTS if importlib.util.find_spec(m) is None]
    if missing:
        return (f"ComfyUI's requirements are not installed in {sys.executable} (missing {', '.join(missing)}); "
                f"run pip install -r {root / 'requirements.txt'} requests")
    return None
