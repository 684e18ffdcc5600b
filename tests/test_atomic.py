import pytest

from nada_core.atomic import atomic_write, atomic_write_text


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "sub" / "f.txt"
    atomic_write_text(target, "first")
    atomic_write_text(target, "second")
    assert target.read_text() == "second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.txt"]


def test_failed_write_leaves_previous_file_and_no_temp(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"good")

    def half_write(p):
        p.write_bytes(b"partial")
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of a save

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, half_write)
    assert target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_saved_files_get_normal_permissions(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        target = atomic_write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


# ------------------------------------------------------------------ file modes follow the umask


def _mode_under_umask(umask: int, write) -> int:
    import os
    import stat

    old = os.umask(umask)
    try:
        path = write()
    finally:
        os.umask(old)
    return stat.S_IMODE(os.stat(path).st_mode)


def _writers(tmp_path):
    """Every kind of file the pack writes, each through its own library (safetensors, Pillow, json...)."""
    import torch

    from nada_core.editing.latents import Latents, save_latents
    from nada_core.formats.checkpoints import save_generator
    from nada_core.media.animation import write_animation
    from nada_core.media.images import save_png
    from nada_core.media.plots import save_loss_plot
    from tests.factories import tiny_generator

    G = tiny_generator(16)
    frames = [torch.rand(3, 8, 8) * 2 - 1 for _ in range(3)]
    return {
        "generator.safetensors": lambda p: save_generator(G, p),
        "latents.safetensors": lambda p: save_latents(Latents(torch.zeros(2, G.num_ws, G.w_dim)), p),
        "grid.png": lambda p: save_png(torch.zeros(1, 3, 8, 8), p),
        "loss.png": lambda p: save_loss_plot({"total": [1.0, 0.5, 0.25]}, p, width=120, height=80),
        "metrics.json": lambda p: atomic_write_text(p, "{}"),
        "walk.gif": lambda p: write_animation(frames, p),
        "walk.webp": lambda p: write_animation(frames, p),
        "walk.apng": lambda p: write_animation(frames, p),
    }


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_every_written_file_gets_the_umask_mode(tmp_path, umask, expected):
    """safetensors' writer replaces the temp file with a 0600 one; the final file must still get
    0666 & ~umask like any program's output, whichever library wrote it."""
    for name, write in _writers(tmp_path).items():
        target = tmp_path / f"{umask:o}" / name
        mode = _mode_under_umask(umask, lambda: (write(target), target)[1])
        assert mode == expected, f"{name}: mode {mode:o} under umask {umask:o}, expected {expected:o}"


def test_a_writer_that_replaces_the_temp_file_is_corrected(tmp_path):
    """A library that unlinks our temp file and creates its own with mode 0600 (like safetensors)."""
    import os

    def replace_with_private(p):
        os.unlink(p)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, b"data")
        os.close(fd)

    mode = _mode_under_umask(0o022, lambda: atomic_write(tmp_path / "f.bin", replace_with_private))
    assert mode == 0o644
    assert (tmp_path / "f.bin").read_bytes() == b"data"
