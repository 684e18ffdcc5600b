"""``nada train --adapt``, ``--domain`` on sample/interpolate, ``nada bake``, ``nada info`` on a domain."""

from __future__ import annotations

import pytest
import torch

from nada_core import cli
from nada_core.domains import apply_domains, load_domain
from nada_core.formats.checkpoints import load_generator, save_generator, sha256_file
from nada_core.media.images import load_image
from tests.clip_factory import save_tiny_clip
from tests.factories import tiny_generator


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("domain_cli")
    gen = save_generator(tiny_generator(16), root / "source.safetensors")
    clip = save_tiny_clip(root / "clip", layout="safetensors")
    out = root / "run"
    rc = cli.main(["train", "--generator", str(gen), "--clip", clip, "--source", "photo", "--target", "sketch",
                   "--adapt", "stylespace", "--train-torgb", "--steps", "4", "--batch", "2", "--lr", "0.05",
                   "--device", "cpu", "--out", str(out), "--quiet", "--eval-seeds", "1000-1001"])
    assert rc == 0
    return root, gen, out / "domain.safetensors"


def test_train_adapt_writes_a_domain_instead_of_a_generator(run):
    root, gen, dom = run
    names = sorted(p.name for p in dom.parent.iterdir())
    assert names == ["domain.safetensors", "loss.png", "metrics.json", "preview_000004.png", "train_state.safetensors"]
    d = load_domain(dom)
    assert d.kind == "stylespace" and any(l.kind == "torgb" for l in d.layers)
    assert d.source_sha256 == sha256_file(gen)
    assert d.metadata["nada"]["settings"]["adapt"] == "stylespace"
    # An explicit --lr keeps the compact recipe's plain Adam (StyleDomain: betas 0.9, 0.999; no 0.8 ratio).
    settings = d.metadata["nada"]["settings"]
    assert (settings["lr"], settings["betas"], settings["adam_ratio"]) == (0.05, [0.9, 0.999], 1.0)
    assert d.metadata["nada"]["clip_models"][0]["weight"] == 1.0
    assert "diversity_after" in d.metadata["metrics"]


def test_info_describes_a_domain(run, capsys):
    assert cli.main(["info", str(run[2])]) == 0
    text = capsys.readouterr().out
    assert "stylespace" in text and "'photo' -> 'sketch'" in text and sha256_file(run[1]) in text


def test_sample_with_domain_strengths(run, tmp_path):
    root, gen, dom = run
    plain, zero, one = tmp_path / "plain.png", tmp_path / "zero.png", tmp_path / "one.png"
    base = ["sample", "--generator", str(gen), "--seeds", "0-1", "--device", "cpu"]
    assert cli.main([*base, "--out", str(plain)]) == 0
    assert cli.main([*base, "--domain", f"{dom}@0", "--out", str(zero)]) == 0
    assert cli.main([*base, "--domain", str(dom), "--out", str(one)]) == 0
    assert plain.read_bytes() == zero.read_bytes()
    assert not torch.equal(load_image(one), load_image(plain))


def test_a_strength_that_is_not_a_number_is_named(run, tmp_path, capsys):
    root, gen, dom = run
    capsys.readouterr()
    assert cli.main(["sample", "--generator", str(gen), "--seeds", "0", "--device", "cpu", "--domain", f"{dom}@abc",
                     "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "strength 'abc' is not a number" in err
    assert not (tmp_path / "x.png").exists()
    # An '@' that belongs to the file name still works.
    named = tmp_path / "style@home.safetensors"
    named.write_bytes(dom.read_bytes())
    assert cli.main(["sample", "--generator", str(gen), "--seeds", "0", "--device", "cpu", "--domain", str(named),
                     "--out", str(tmp_path / "y.png")]) == 0


def test_bake_and_wrong_source(run, tmp_path, capsys):
    root, gen, dom = run
    out = tmp_path / "baked.safetensors"
    assert cli.main(["bake", "--generator", str(gen), "--domain", f"{dom}@0.5", "--out", str(out),
                     "--device", "cpu"]) == 0
    G, baked = load_generator(gen), load_generator(out)
    z = torch.randn(2, G.z_dim)
    with torch.no_grad():
        ref = apply_domains(G, [(load_domain(dom), 0.5)])(z)
        assert (baked(z) - ref).abs().max() < 1e-4
    other = save_generator(tiny_generator(16, seed=9), tmp_path / "other.safetensors")
    capsys.readouterr()
    assert cli.main(["bake", "--generator", str(other), "--domain", str(dom), "--out",
                     str(tmp_path / "x.safetensors"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "trained on generator" in err


def test_interpolate_strength_sweep(run, tmp_path):
    root, gen, dom = run
    frames = tmp_path / "frames"
    assert cli.main(["interpolate", "--generator", str(gen), "--domain", str(dom), "--strengths", "0,1",
                     "--seeds", "0,1", "--frames", "3", "--out", str(frames), "--quiet", "--device", "cpu"]) == 0
    files = sorted(frames.iterdir())
    assert len(files) == 3
    plain = tmp_path / "plain.png"
    assert cli.main(["sample", "--generator", str(gen), "--seeds", "0,1", "--columns", "2", "--device", "cpu",
                     "--out", str(plain)]) == 0
    assert torch.equal(load_image(files[0]), load_image(plain))  # strength 0 frame = the base grid
    assert cli.main(["interpolate", "--generator", str(gen), "--strengths", "0,1", "--seeds", "0,1",
                     "--out", str(tmp_path / "f2"), "--quiet", "--device", "cpu"]) == 2


def test_train_several_targets_writes_one_domain_each(run, tmp_path):
    root, gen, _ = run
    clip = save_tiny_clip(tmp_path / "clip", layout="safetensors")
    out = tmp_path / "multi"
    rc = cli.main(["train", "--generator", str(gen), "--clip", clip, "--source", "photo", "--target", "sketch",
                   "--target", "oil painting", "--adapt", "domain", "--domain-layers", "0-2", "--steps", "2",
                   "--device", "cpu", "--out", str(out), "--quiet", "--eval-seeds", "none", "--preview-every", "0"])
    assert rc == 0
    a, b = load_domain(out / "domain_sketch.safetensors"), load_domain(out / "domain_oil_painting.safetensors")
    assert a.metadata["nada"]["direction"]["target_text"] == "sketch"
    assert sorted({l.w_index for l in a.layers}) == [0, 1, 2] == sorted({l.w_index for l in b.layers})
    # Without --lr a compact run uses the reference recipe (HyperDomainNet: 0.1, Adam 0.9/0.999).
    assert a.metadata["nada"]["settings"]["lr"] == 0.1 and a.metadata["nada"]["settings"]["betas"] == [0.9, 0.999]
    assert b.metadata["nada"]["direction"]["target_text"] == "oil painting"
    assert any(not torch.equal(a.values[k], b.values[k]) for k in a.values)
    assert cli.main(["train", "--generator", str(gen), "--clip", clip, "--source", "photo", "--target", "a",
                     "--target", "b", "--steps", "2", "--device", "cpu", "--out", str(tmp_path / "full"),
                     "--quiet"]) == 2  # several targets need a compact --adapt
    assert cli.main(["train", "--generator", str(gen), "--clip", clip, "--source", "photo", "--target", "sketch",
                     "--target", "Sketch", "--adapt", "domain", "--steps", "2", "--device", "cpu",
                     "--out", str(tmp_path / "twice"), "--quiet"]) == 2  # a target given twice


def test_a_domain_file_given_as_generator_says_what_it_is(run, tmp_path, capsys):
    assert cli.main(["sample", "--generator", str(run[2]), "--out", str(tmp_path / "x.png"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "compact domain file, not a generator" in err and err.count("\n") == 1
