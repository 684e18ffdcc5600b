"""Suite-wide test settings."""

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    # The tests use tiny tensors: extra threads only add overhead, and on a small shared
    # machine two threads ran tens of times slower than one.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
