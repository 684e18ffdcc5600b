"""Suite-wide test settings."""

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
