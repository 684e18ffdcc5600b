"""Image helper nodes: load a folder of example images as one batch."""

from __future__ import annotations

import logging

from . import paths
from . import types as T
from .common import CATEGORY_IMAGE, combo, int_input, node_error, register
from .invert_nodes import FIT_MODES, FIT_TOOLTIP

log = logging.getLogger("ComfyUI-NADA")


def _folder_signature(folder) -> str:
    """Changes when an image is added, removed or replaced; no path in it (it ends up in saved images)."""
    return paths.fingerprint([folder / name for name in paths.list_files(folder, paths.IMAGE_EXTENSIONS)])


@register("NADA Load Image Folder")
class NadaLoadImageFolder:
    DESCRIPTION = ("Loads every image in a sub-folder of ComfyUI/input as one batch, all brought to the same square "
                   "size (e.g. a few examples of the target style for NADA Image Direction).")
    CATEGORY = CATEGORY_IMAGE
    RETURN_TYPES = (T.IMAGE,)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("The images, [count, size, size, 3], sorted by file name.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "folder": combo(paths.list_input_subfolders(), "Sub-folder of ComfyUI/input holding the images "
                                "(PNG, JPEG, WebP, TIFF, BMP)."),
                "size": int_input(256, 16, 4096, "Side of the square the images are brought to (CLIP resizes again "
                                  "to its own input size, so 224-512 is plenty)."),
                "fit": combo(FIT_MODES, FIT_TOOLTIP, default="crop"),
                "max_images": int_input(0, 0, 10000, "Load at most this many (0 = all). A file that cannot be read is "
                                        "skipped with a warning in ComfyUI's console."),
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, folder):
        try:
            path = paths.resolve_dir(paths.input_dir(), folder, "image folder")
        except paths.ModelNotFound as err:
            return f"{cls.DISPLAY_NAME}: {err}"
        if not paths.list_files(path, paths.IMAGE_EXTENSIONS):
            return f"{cls.DISPLAY_NAME}: folder '{folder}' holds no images; put PNG or JPEG files in {path}"
        return True

    @classmethod
    def IS_CHANGED(cls, folder, **_other_inputs):
        try:
            return _folder_signature(paths.resolve_dir(paths.input_dir(), folder, "image folder"))
        except paths.ModelNotFound:
            return ""

    def load(self, folder: str, size: int, fit: str, max_images: int):
        from nada_core.errors import InputError
        from nada_core.media.image_prep import prepare_images
        from nada_core.media.images import load_image

        path = paths.resolve_dir(paths.input_dir(), folder, "image folder")
        names = paths.list_files(path, paths.IMAGE_EXTENSIONS)
        if not names:
            raise node_error(self, f"folder '{folder}' holds no images; put PNG or JPEG files in {path}")
        images, skipped = [], []
        for name in names:  # one unreadable file among the examples is skipped, not fatal
            if max_images and len(images) >= int(max_images):
                break
            try:
                images.append(load_image(path / name))
            except InputError as err:
                skipped.append(f"{name} ({err})")
                log.warning("%s: skipped %s: %s", self.DISPLAY_NAME, name, err)
        if not images:
            raise node_error(self, f"none of the {len(names)} image files in '{folder}' could be read, e.g. "
                                   f"{skipped[0]}; use PNG, JPEG, WebP, TIFF or BMP files")
        prepared = prepare_images(images, int(size), fit)
        return (prepared.images.permute(0, 2, 3, 1).contiguous().float(),)
