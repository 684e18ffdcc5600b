"""Suite-wide test settings.

``NADA_REQUIRE_COMFYUI=1`` (set by .ci/run on machines that have ComfyUI) turns a skipped
in-ComfyUI or browser test into a failure: there, a skip means the setup broke, not that the
test does not apply.
"""

import os

import pytest
import torch

from tests.clip_factory import load_tiny_clip


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    # The tests use tiny tensors: extra threads only add overhead, and on a small shared
    # machine two threads ran tens of times slower than one.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random CLIP (seed 0) loaded through ``load_clip``; test files may override it."""
    return load_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="module")
def tiny_b(tmp_path_factory):
    """A second tiny CLIP with other weights (seed 1), from the Hugging Face folder layout."""
    return load_tiny_clip(tmp_path_factory.mktemp("clip_b"), layout="hf", seed=1)


# Test files that run the real ComfyUI (or a browser against it); tests elsewhere marked
# ``comfyui`` count too.
COMFYUI_TEST_FILES = frozenset({"test_comfy_pack.py", "test_queue_live.py", "test_frontend.py"})


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
