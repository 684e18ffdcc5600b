"""Every kind of image a user has becomes a [N, 3, R, R] batch in [0, 1], with the crop box reported."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from nada_core.errors import InputError
from nada_core.media.image_prep import centre_crop_box, prepare_images



def _three_bands(w: int, h: int, axis: str) -> np.ndarray:
    """uint8 image: outer bands red/blue, the centred square (the crop) pure green."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[..., 1] = 255
    left, top, right, bottom = centre_crop_box(w, h)
    if axis == "x":
        arr[:, :left] = (255, 0, 0)
        arr[:, right:] = (0, 0, 255)
    else:
        arr[:top] = (255, 0, 0)
        arr[bottom:] = (0, 0, 255)
    return arr


def test_centre_crop_box_values():
    assert centre_crop_box(40, 20) == (10, 0, 30, 20)
    assert centre_crop_box(20, 41) == (0, 10, 20, 30)
    assert centre_crop_box(7, 7) == (0, 0, 7, 7)


@pytest.mark.parametrize("w,h,axis", [(40, 20, "x"), (3, 100, "y"), (1000, 2, "x"), (64, 16, "x")])
def test_non_square_images_are_centre_cropped(tmp_path, w, h, axis):
    path = tmp_path / "img.png"
    Image.fromarray(_three_bands(w, h, axis)).save(path)
    prep = prepare_images(path, 16)
    assert prep.images.shape == (1, 3, 16, 16)
    assert prep.crop_boxes == [centre_crop_box(w, h)]
    assert prep.original_sizes == [(w, h)]
    assert prep.names == ["img.png"]
    # Only the green centre was used: no red or blue bleeds in.
    green = torch.tensor([0.0, 1.0, 0.0]).reshape(3, 1, 1)
    assert torch.allclose(prep.images[0], green.expand(3, 16, 16), atol=1e-4)


def test_rgba_is_composited_over_white(tmp_path):
    arr = np.zeros((8, 8, 4), np.uint8)
    arr[..., 0] = 255  # red
    arr[:, :4, 3] = 255  # left half opaque, right half transparent
    arr[:, 4:, 3] = 0
    Image.fromarray(arr, "RGBA").save(tmp_path / "a.png")
    img = prepare_images(tmp_path / "a.png", 8).images[0]
    assert torch.allclose(img[:, :, :4], torch.tensor([1.0, 0, 0]).reshape(3, 1, 1).expand(3, 8, 4), atol=1e-6)
    assert torch.allclose(img[:, :, 4:], torch.ones(3, 8, 4), atol=1e-6)


def test_half_transparent_rgba_tensor_blends_with_white():
    x = torch.zeros(1, 4, 8, 8)
    x[:, 3] = 0.25  # black at 25 % opacity over white -> 0.75 grey
    img = prepare_images(x, 4).images[0]
    assert torch.allclose(img, torch.full((3, 4, 4), 0.75))
    # A tiny 4x4 RGBA batch fits both layouts: the caller says which.
    assert torch.allclose(prepare_images(x[..., :4, :4], 4, layout="nchw").images[0], torch.full((3, 4, 4), 0.75))


def test_greyscale_becomes_three_equal_channels(tmp_path):
    arr = (np.arange(64).reshape(8, 8) * 4).astype(np.uint8)
    Image.fromarray(arr, "L").save(tmp_path / "g.png")
    img = prepare_images(tmp_path / "g.png", 8).images[0]
    assert torch.equal(img[0], img[1]) and torch.equal(img[1], img[2])
    assert torch.allclose(img[0], torch.from_numpy(arr).float() / 255.0)


def test_16_bit_png_keeps_its_precision(tmp_path):
    # Levels 1000, 1001, ... are closer together than one 8-bit step (257).
    arr = (1000 + np.arange(64).reshape(8, 8)).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as im:
        assert im.mode.startswith("I")
    img = prepare_images(tmp_path / "deep.png", 8).images[0]
    expected = torch.from_numpy(arr.astype(np.float64) / 65535.0).float()
    assert torch.allclose(img[0], expected, atol=1e-7)
    assert len(torch.unique(img[0])) == 64  # 8-bit rounding would merge them


def test_16_bit_rgb_numpy_and_uint16_tensor():
    arr = np.full((4, 4, 3), 40000, np.uint16)
    img = prepare_images(arr, 4).images[0]
    assert torch.allclose(img, torch.full((3, 4, 4), 40000 / 65535.0))
    t = torch.full((3, 4, 4), 200, dtype=torch.uint8)
    assert torch.allclose(prepare_images(t, 4).images[0], torch.full((3, 4, 4), 200 / 255.0))


def test_tiny_image_is_upscaled():
    one = torch.tensor([0.2, 0.4, 0.6]).reshape(3, 1, 1)
    prep = prepare_images(one, 16)
    assert prep.crop_boxes == [(0, 0, 1, 1)]
    assert torch.allclose(prep.images[0], one.expand(3, 16, 16), atol=1e-6)


def test_downscaling_is_antialiased():
    # A one-pixel checkerboard shrunk 16x must average to grey, not alias to black or white.
    yy, xx = torch.meshgrid(torch.arange(256), torch.arange(256), indexing="ij")
    board = ((yy + xx) % 2).float().expand(3, -1, -1)
    img = prepare_images(board, 16).images[0]
    assert img.min() > 0.4 and img.max() < 0.6


def test_tensor_layouts_agree():
    torch.manual_seed(0)
    nchw = torch.rand(2, 3, 12, 20)
    comfy = nchw.permute(0, 2, 3, 1).contiguous()
    a = prepare_images(nchw, 8)
    b = prepare_images(comfy, 8)
    c = prepare_images([nchw[0], nchw[1]], 8)
    assert torch.equal(a.images, b.images) and torch.equal(a.images, c.images)
    assert a.crop_boxes == [(4, 0, 16, 12)] * 2
    assert a.names == ["image_0", "image_1"]
    # RGBA ComfyUI batch with an explicit layout.
    rgba = torch.cat([comfy, torch.ones(2, 12, 20, 1)], dim=-1)
    assert torch.equal(prepare_images(rgba, 8, layout="comfy").images, a.images)


def test_mixed_list_of_inputs(tmp_path):
    Image.fromarray(np.full((10, 10, 3), 128, np.uint8)).save(tmp_path / "p.png")
    pil = Image.new("RGB", (6, 6), (0, 255, 0))
    prep = prepare_images([tmp_path / "p.png", pil, torch.zeros(3, 5, 5)], 4)
    assert prep.images.shape == (3, 3, 4, 4)
    assert prep.names == ["p.png", "image_1", "image_2"]
    assert torch.allclose(prep.images[1], torch.tensor([0.0, 1, 0]).reshape(3, 1, 1).expand(3, 4, 4))


def test_pad_and_stretch_modes():
    x = torch.zeros(3, 8, 16)  # black, twice as wide as tall
    pad = prepare_images(x, 16, fit="pad")
    assert pad.crop_boxes == [(0, 0, 16, 8)]
    img = pad.images[0]
    assert torch.all(img[:, :4] == 1.0) and torch.all(img[:, 12:] == 1.0)  # white bars
    assert torch.all(img[:, 4:12] == 0.0)
    stretch = prepare_images(x, 16, fit="stretch")
    assert torch.all(stretch.images == 0.0)


@pytest.mark.parametrize("bad,message", [
    (torch.rand(3, 4, 4) * 2 - 1, "[-1, 1]"),
    (torch.rand(5, 6, 7), "channels"),
    (torch.rand(2, 3, 4, 3), "ambiguous"),
    (torch.zeros(3, 0, 4), "empty"),
    (torch.full((3, 2, 2), float("nan")), "NaN"),
    (42, "int"),
    ([], "no images"),
])
def test_bad_inputs_give_clear_errors(bad, message):
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        prepare_images(bad, 8)


def test_missing_file_and_bad_fit(tmp_path):
    with pytest.raises(InputError, match="not found"):
        prepare_images(tmp_path / "nope.png", 8)
    with pytest.raises(InputError, match="fit mode"):
        prepare_images(torch.zeros(3, 4, 4), 8, fit="zoom")
