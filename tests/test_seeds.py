import numpy as np
import pytest
import torch

from nada_core.errors import InputError
from nada_core.seeds import parse_seeds, z_from_seed, z_from_seeds


@pytest.mark.parametrize("spec, expected", [
    ("0-7", list(range(8))),
    ("1,5,9", [1, 5, 9]),
    ("0-2, 10, 20..22", [0, 1, 2, 10, 20, 21, 22]),
    ("3", [3]),
    (" 4 - 5 ", [4, 5]),
    (7, [7]),
    ([2, 1, 2], [2, 1, 2]),
])
def test_parse_seeds(spec, expected):
    assert parse_seeds(spec) == expected


@pytest.mark.parametrize("spec, words", [
    ("", "no seeds"),
    ("5-2", "backwards"),
    ("a,b", "cannot read seed"),
    ("-1", "out of range"),
    ("4294967296", "out of range"),
    ("0-200000", "over 100000"),
])
def test_parse_seeds_errors(spec, words):
    with pytest.raises(InputError, match=words):
        parse_seeds(spec)


def test_z_from_seed_matches_numpy_randomstate_and_is_stable():
    z = z_from_seed(42, 16)
    expected = np.random.RandomState(42).randn(16).astype(np.float32)
    assert z.dtype == torch.float32 and z.shape == (16,)
    assert np.array_equal(z.numpy(), expected)
    # The same seed gives the same code regardless of the other seeds in the batch.
    batch = z_from_seeds([7, 42, 3], 16)
    assert torch.equal(batch[1], z)
    assert not torch.equal(batch[0], batch[2])
