import numpy as np
import pytest
import torch
from PIL import Image

from nada_core.errors import InputError
from nada_core.media.images import (from_comfy, load_image, make_grid, pil_to_unit, save_png, to_comfy, to_uint8,
                              to_unit)


def test_to_unit_and_uint8_mapping():
    x = torch.tensor([-1.5, -1.0, 0.0, 1.0, 2.0]).reshape(1, 1, 1, 5)
    assert torch.allclose(to_unit(x).flatten(), torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]))
    u8 = to_uint8(x.expand(1, 3, 1, 5))
    assert u8.shape == (1, 1, 5, 3) and u8.dtype == np.uint8
    assert list(u8[0, 0, :, 0]) == [0, 0, 128, 255, 255]


def test_comfy_round_trip_and_alpha_compositing():
    img = torch.rand(2, 3, 8, 6) * 2 - 1
    c = to_comfy(img)
    assert c.shape == (2, 8, 6, 3) and c.min() >= 0 and c.max() <= 1
    back = from_comfy(c)
    assert torch.allclose(back, to_unit(img), atol=1e-6)
    rgba = torch.zeros(1, 4, 4, 4)
    rgba[..., 0] = 1.0          # red
    rgba[..., 3] = 0.25         # mostly transparent -> mostly white
    out = from_comfy(rgba)
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([1.0, 0.75, 0.75]))
    grey = torch.full((1, 4, 4, 1), 0.3)
    assert torch.allclose(from_comfy(grey), torch.full((1, 3, 4, 4), 0.3))


def test_make_grid_places_tiles():
    tiles = torch.stack([torch.full((1, 2, 2), float(i)) for i in range(5)])
    g = make_grid(tiles, ncols=3, pad=1, pad_value=-1.0)
    assert g.shape == (1, 1, 2 * 2 + 1, 3 * 2 + 2)
    assert g[0, 0, 0, 0] == 0 and g[0, 0, 0, 3] == 1 and g[0, 0, 3, 3] == 4
    assert g[0, 0, 3, 6] == -1.0  # the empty sixth cell is padding
    assert g[0, 0, 2, 0] == -1.0  # the padding row


def test_pil_modes(tmp_path):
    rgb = Image.fromarray(np.full((4, 5, 3), [255, 0, 0], np.uint8))
    assert torch.allclose(pil_to_unit(rgb)[:, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    la = Image.fromarray(np.stack([np.zeros((3, 3), np.uint8), np.full((3, 3), 0, np.uint8)], -1), "LA")
    assert torch.allclose(pil_to_unit(la), torch.ones(3, 3, 3))  # fully transparent black -> white
    arr16 = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000)
    p16 = tmp_path / "g16.png"
    Image.fromarray(arr16).save(p16)
    x = load_image(p16)
    assert x.shape == (3, 3, 4)
    assert torch.allclose(x[0], torch.from_numpy(arr16 / 65535.0).float(), atol=1e-6)
    assert x[0, 0, 1] == pytest.approx(5000 / 65535, abs=1e-6)  # not quantised to 8 bits


def test_load_image_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_image(tmp_path / "nope.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(InputError, match="cannot read image"):
        load_image(bad)


def test_save_png_round_trip(tmp_path):
    img = torch.rand(1, 3, 6, 7) * 2 - 1
    path = save_png(img, tmp_path / "a.png")
    arr = np.asarray(Image.open(path))
    assert arr.shape == (6, 7, 3)
    assert np.array_equal(arr, to_uint8(img)[0])
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]  # no temp file left behind
