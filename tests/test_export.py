"""``nada export`` / :func:`export_generator`: rosinality ``.pt`` files for e4e, pSp, StyleCLIP, StyleGAN-NADA.

The expected layout comes from :func:`checkpoint_factories.rosinality_state_dict` (written from
rosinality's ``Generator.state_dict()``, independently of the loader's table), the expected images
from the float64 reference in :mod:`reference_stylegan2`.
"""

from __future__ import annotations

import pytest
import torch

import checkpoint_factories as cf
from nada_core import cli
from nada_core.errors import InputError
from nada_core.formats.checkpoints import load_generator, save_generator
from nada_core.formats.export import export_generator, rosinality_checkpoint
from nada_core.models.stylegan2 import GeneratorConfig, channels_from_multiplier
from nada_core.models.random_init import random_generator
from reference_stylegan2 import rosinality_reference
from tests.factories import tiny_generator


def _table_generator(size: int = 16, w_dim: int = 16, seed: int = 5):
    cfg = GeneratorConfig(img_resolution=size, channels=channels_from_multiplier(size, 2), z_dim=w_dim, w_dim=w_dim,
                          mapping_layers=2)
    return random_generator(cfg, seed=seed, bias_std=0.2, w_avg_std=0.3)


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_rosinality_export_has_their_exact_layout_and_renders_the_same(tmp_path):
    G = _table_generator()
    out = export_generator(G, tmp_path / "adapted.pt")
    ckpt = torch.load(out, weights_only=True)  # OUR OWN file: e4e/pSp open it exactly like this
    assert list(ckpt) == ["g_ema", "latent_avg"]
    expected = cf.rosinality_state_dict(size=16, style_dim=16, n_mlp=2, channel_multiplier=2)
    assert list(ckpt["g_ema"]) == list(expected)  # names and order of rosinality's state_dict()
    assert {k: tuple(v.shape) for k, v in ckpt["g_ema"].items()} == {k: tuple(v.shape) for k, v in expected.items()}
    assert all(v.dtype == torch.float32 for v in ckpt["g_ema"].values())
    assert torch.equal(ckpt["g_ema"]["convs.0.conv.blur.kernel"], expected["convs.0.conv.blur.kernel"])
    assert torch.equal(ckpt["latent_avg"], G.w_avg) and ckpt["latent_avg"].shape == (16,)
    z = torch.randn(2, 16, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ours = G(z, truncation_psi=0.7, noise_mode="const")
    theirs = rosinality_reference(ckpt["g_ema"], z, 0.7, ckpt["latent_avg"])
    assert (ours - theirs).abs().max() <= 1e-5 * max(1.0, theirs.abs().max().item())


def test_round_trip_through_our_loader_is_bit_exact(tmp_path):
    G = tiny_generator(32, seed=3)  # custom widths: written with custom_layout
    out = export_generator(G, tmp_path / "tiny.pt", custom_layout=True)
    back = load_generator(out)
    assert back.config.channel_dict == G.config.channel_dict and back.config.num_ws == G.config.num_ws
    assert _same_weights(back, G)  # every weight, noise map, and w_avg (latent_avg) bit for bit
    assert back.metadata["w_avg_origin"] == "latent_avg"
    # The rosinality state dict is a fresh copy: no view into the generator's tensors.
    ckpt = rosinality_checkpoint(G)
    ckpt["g_ema"]["input.input"].zero_()
    assert G.synthesis.const.abs().sum() > 0


def test_layouts_rosinality_cannot_hold_are_refused_in_one_line(tmp_path):
    cases = [
        (tiny_generator(16), "channel widths", True),
        (tiny_generator(16, z_dim=8), "mapping network is 8 -> 32 -> 32", True),
        (random_generator(GeneratorConfig(img_resolution=16, channels=channels_from_multiplier(16, 2), z_dim=8,
                                          w_dim=8, mapping_layers=1, conv_clamp=256.0)), "conv_clamp", False),
        (random_generator(GeneratorConfig(img_resolution=16, channels=channels_from_multiplier(16, 2), z_dim=8,
                                          w_dim=8, mapping_layers=1, mapping_lr_mul=0.1)), "learning-rate", False),
    ]
    for G, phrase, hint in cases:
        with pytest.raises(InputError, match=phrase) as err:
            export_generator(G, tmp_path / "x.pt")
        msg = str(err.value)
        assert "\n" not in msg and msg.startswith("cannot export as a rosinality .pt")
        # The flag is offered only where it helps (sizes), never for a change of behaviour (clamp, lr).
        assert ("--custom-layout" in msg) == hint
        assert not (tmp_path / "x.pt").exists()
    with pytest.raises(InputError, match="conv_clamp"):  # the flag never hides a behaviour change
        export_generator(cases[2][0], tmp_path / "x.pt", custom_layout=True)
    with pytest.raises(InputError, match="must embed NVIDIA's network source code"):
        export_generator(cases[0][0], tmp_path / "x.pkl", "nvidia")
    with pytest.raises(InputError, match="name it x.pt"):
        export_generator(_table_generator(8), tmp_path / "x.safetensors", "rosinality")


def test_cli_export(tmp_path, capsys):
    G = _table_generator(8, seed=9)
    src = save_generator(G, tmp_path / "adapted.safetensors")
    out = tmp_path / "for_e4e.pt"
    assert cli.main(["export", "--generator", str(src), "--format", "rosinality", "--out", str(out)]) == 0
    assert "loads in rosinality's Generator(8, 16, 2)" in capsys.readouterr().out
    assert _same_weights(load_generator(out), G)
    # One line for what cannot be done; the input is never overwritten.
    assert cli.main(["export", "--generator", str(src), "--format", "nvidia", "--out", str(tmp_path / "g.pkl")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "NVIDIA" in err
    assert cli.main(["export", "--generator", str(out), "--out", str(out)]) == 2
    assert "is the input file" in capsys.readouterr().err
    tiny = save_generator(tiny_generator(16), tmp_path / "tiny.safetensors")
    assert cli.main(["export", "--generator", str(tiny), "--out", str(tmp_path / "t.pt")]) == 2
    assert "--custom-layout" in capsys.readouterr().err
    assert cli.main(["export", "--generator", str(tiny), "--out", str(tmp_path / "t.pt"), "--custom-layout"]) == 0


def test_cli_parser_builds_without_torch():
    """``nada queue`` and ``--help`` run in a Python without torch: no command's arguments import it."""
    import subprocess
    import sys

    from nada_core.commands import export as export_command
    from nada_core.formats.export import EXPORT_FORMATS

    assert export_command.FORMATS == EXPORT_FORMATS
    code = ("import sys; sys.modules['torch'] = None\n"
            "from nada_core.cli import build_parser\n"
            "build_parser().parse_args(['export', '--generator', 'g', '--out', 'o.pt'])\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr
