"""e4e / pSp / ReStyle encoders: loading the released file layout, codes against an independent
re-implementation (tests/reference_encoders.py), the decoder as a generator, and refusals."""

from __future__ import annotations

import json

import pytest
import torch

from nada_core.encoders import load_encoder, resize_like_pil
from nada_core.errors import CheckpointError, InputError, UnsafeCheckpointError
from nada_core.formats.checkpoints import load_generator
from tests.encoder_factories import (decoder_state_dict, encoder_opts, encoder_state_dict, random_latent_avg,
                                     sample_images, write_encoder_checkpoint)
from tests.reference_encoders import pil_resize_256, reference_encode
from tests.reference_stylegan2 import rosinality_reference_ws

# Small widths, the real layout otherwise: 4 stages, FPN taps at the last three stage ends,
# heads with the released conv counts; a 32 px decoder takes 8 W+ entries.
UNITS, WIDTHS, W_DIM, SIZE = (1, 2, 3, 1), (8, 16, 24, 32), 32, 32
N_STYLES = 2 * 5 - 2
TYPES = {"e4e": ("Encoder4Editing", 3), "psp": ("GradualStyleEncoder", 3),
         "restyle_psp": ("BackboneEncoder", 6), "restyle_e4e": ("ProgressiveBackboneEncoder", 6)}


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    tol = 1e-4 * max(1.0, float(expected.abs().max()))
    diff = float((actual.double() - expected.double()).abs().max())
    assert diff <= tol, f"max |diff| {diff:.3g} > {tol:.3g}"


def _make(tmp_path, family: str, *, seed: int = 0, se: bool = True, opts_extra: dict | None = None,
          namespace: bool = False, decoder: bool = True, latent_avg: bool = True, name: str | None = None):
    etype, nc = TYPES[family]
    sd = encoder_state_dict(etype, input_nc=nc, n_styles=N_STYLES, units=UNITS, widths=WIDTHS, w_dim=W_DIM,
                            se=se, seed=seed)
    dec = decoder_state_dict(SIZE, style_dim=W_DIM) if decoder else None
    la = random_latent_avg(N_STYLES, W_DIM) if latent_avg else None
    opts = encoder_opts(etype, output_size=SIZE, input_nc=nc, **(opts_extra or {}))
    path = write_encoder_checkpoint(tmp_path / (name or f"{family}.pt"), sd, opts, decoder_sd=dec, latent_avg=la,
                                    opts_as_namespace=namespace)
    return path, sd, dec, la


@pytest.mark.parametrize("family", ["e4e", "psp"])
def test_one_pass_codes_match_the_reference(tmp_path, family):
    path, sd, _, la = _make(tmp_path, family)
    enc = load_encoder(path)
    assert (enc.num_ws, enc.w_dim, enc.iterative, enc.info.family) == (N_STYLES, W_DIM, False, family)
    assert enc.decoder is None  # one-pass encoders do not need it
    x = sample_images(2, 256)
    ws = enc.encode(x)
    assert ws.shape == (2, N_STYLES, W_DIM)
    etype = TYPES[family][0]
    _close(ws, reference_encode(sd, x, etype, la)[0])
    # The two images are encoded independently (batch order does not matter).
    _close(enc.encode(x[1:]), ws[1:])


def test_e4e_entries_are_offsets_of_entry_0_and_psp_entries_independent(tmp_path):
    """e4e's design: zeroing every head but the first makes all entries equal; pSp has no such coupling."""
    path, sd, _, la = _make(tmp_path, "e4e")
    enc = load_encoder(path)
    with torch.no_grad():
        for head in list(enc.net.styles)[1:]:
            head.linear.weight.zero_()
            head.linear.bias.zero_()
    ws = enc.encode(sample_images(1, 256)) - la
    assert torch.allclose(ws, ws[:, :1].expand_as(ws), atol=1e-6)
    assert not torch.allclose(ws[0, 0], torch.zeros(W_DIM))


def test_other_sizes_are_resized_like_pillow_on_8bit_pixels(tmp_path):
    path, sd, _, la = _make(tmp_path, "psp")
    enc = load_encoder(path)
    x = sample_images(1, 300, seed=9)[:, :, :280, :]  # 280 x 300, not square
    prep = enc.preprocess(x)
    assert prep.shape == (1, 3, 256, 256)
    assert torch.equal(prep, pil_resize_256(x))
    _close(enc.encode(x), reference_encode(sd, x, "GradualStyleEncoder", la)[0])
    # A 256 px batch is used exactly as given (no re-quantisation).
    y = torch.rand(1, 3, 256, 256) * 2 - 1
    assert torch.equal(resize_like_pil(y, 256), y)


def test_psp_without_start_from_latent_avg_adds_nothing(tmp_path):
    path, sd, _, la = _make(tmp_path, "psp", opts_extra={"start_from_latent_avg": False})
    enc = load_encoder(path)
    assert not enc.info.adds_latent_avg
    x = sample_images(1, 256)
    _close(enc.encode(x), reference_encode(sd, x, "GradualStyleEncoder", None)[0])


def test_opts_saved_as_namespace_and_plain_ir_units(tmp_path):
    path, sd, _, la = _make(tmp_path, "e4e", se=False, namespace=True)
    enc = load_encoder(path)
    assert enc.layout.mode == "ir" and enc.info.backbone.startswith("IR(")
    x = sample_images(1, 256)
    _close(enc.encode(x), reference_encode(sd, x, "Encoder4Editing", la)[0])


@pytest.mark.parametrize("family", ["restyle_psp", "restyle_e4e"])
def test_restyle_iterations_match_the_reference_loop(tmp_path, family):
    path, sd, dec, la = _make(tmp_path, family)
    enc = load_encoder(path)
    assert enc.iterative and enc.decoder is not None and enc.info.default_iters == 5
    x = sample_images(1, 256)
    ws, steps = enc.encode(x, n_iters=3, return_steps=True)
    assert len(steps) == 3 and torch.equal(steps[-1], ws)
    expected = reference_encode(sd, x, TYPES[family][0], la, decoder=lambda w: rosinality_reference_ws(dec, w),
                                n_iters=3)
    for got, want in zip(steps, expected):
        _close(got, want)
    assert not torch.allclose(steps[0], steps[1])  # the feedback changes the codes


def test_restyle_needs_a_generator_when_the_file_has_no_decoder(tmp_path):
    path, sd, _, la = _make(tmp_path, "restyle_psp", decoder=False)
    enc = load_encoder(path)
    assert enc.decoder is None
    with pytest.raises(InputError, match="through a generator"):
        enc.encode(sample_images(1, 64))
    G = load_generator(_make(tmp_path, "restyle_psp", name="with_decoder.pt")[0])
    assert enc.encode(sample_images(1, 64), n_iters=2, generator=G).shape == (1, N_STYLES, W_DIM)
    one_pass = load_encoder(_make(tmp_path, "e4e")[0])
    with pytest.raises(InputError, match="n_iters"):
        one_pass.encode(sample_images(1, 64), n_iters=3)


def test_load_generator_opens_the_decoder_inside_an_encoder_file(tmp_path):
    path, sd, dec, la = _make(tmp_path, "e4e")
    G = load_generator(path)
    assert G.img_resolution == SIZE and G.num_ws == N_STYLES and G.w_dim == W_DIM
    assert G.metadata["network"] == "decoder" and G.metadata["w_avg_origin"] == "latent_avg"
    assert torch.equal(G.w_avg, la[0])
    ws = la.unsqueeze(0) + 0.3 * torch.randn(2, N_STYLES, W_DIM)
    with torch.no_grad():
        _close(G.synthesis(ws, noise_mode="const"), rosinality_reference_ws(dec, ws))
    enc = load_encoder(path, decoder=True)
    assert enc.decoder is not None and enc.decoder.num_ws == N_STYLES


def test_encoder_file_without_decoder_is_not_a_generator(tmp_path):
    path = _make(tmp_path, "e4e", decoder=False)[0]
    with pytest.raises(CheckpointError, match="without a decoder"):
        load_generator(path)


# ----------------------------------------------------------------------------------------------
# Refusals: one line naming the file and the problem
# ----------------------------------------------------------------------------------------------


def _one_line(err: pytest.ExceptionInfo, *words: str) -> None:
    msg = str(err.value)
    assert "\n" not in msg and "Traceback" not in msg
    for w in words:
        assert w in msg, msg


def test_refuses_files_it_cannot_build(tmp_path):
    etype, nc = TYPES["e4e"]
    sd = encoder_state_dict(etype, n_styles=N_STYLES, units=UNITS, widths=WIDTHS, w_dim=W_DIM)
    la = random_latent_avg(N_STYLES, W_DIM)

    def write(name, sd_=sd, opts=encoder_opts(etype, output_size=SIZE), **kw):
        return write_encoder_checkpoint(tmp_path / name, sd_, opts, latent_avg=kw.pop("latent_avg", la), **kw)

    with pytest.raises(CheckpointError) as e:
        load_encoder(write("no_type.pt", opts={k: v for k, v in encoder_opts(etype).items() if k != "encoder_type"}))
    _one_line(e, "no_type.pt", "encoder_type")
    with pytest.raises(CheckpointError) as e:
        load_encoder(write("resnet.pt", opts=encoder_opts("ResNetBackboneEncoder", output_size=SIZE)))
    _one_line(e, "ResNetBackboneEncoder", "not supported")
    with pytest.raises(CheckpointError) as e:
        load_encoder(write("cars.pt", opts=encoder_opts(etype, output_size=SIZE, dataset_type="cars_encode")))
    _one_line(e, "car encoders")
    with pytest.raises(CheckpointError) as e:
        load_encoder(write("size.pt", opts=encoder_opts(etype, output_size=1024)))
    _one_line(e, "8 style heads", "1024 px", "18")
    with pytest.raises(CheckpointError) as e:
        load_encoder(write("no_avg.pt", latent_avg=None))
    _one_line(e, "latent_avg")
    gap = {k: v for k, v in sd.items() if not k.startswith("body.2.")}
    with pytest.raises(CheckpointError) as e:
        load_encoder(write("gap.pt", sd_=gap))
    _one_line(e, "gap.pt", "body units")
    bad_head = dict(sd)
    bad_head["styles.3.linear.weight"] = torch.zeros(W_DIM, 7)
    with pytest.raises(CheckpointError) as e:
        load_encoder(write("head.pt", sd_=bad_head))
    _one_line(e, "head 3")
    with pytest.raises(CheckpointError) as e:
        load_encoder(write("avg_shape.pt", latent_avg=torch.zeros(5, W_DIM)))
    _one_line(e, "latent_avg", "[5, 32]")
    extra = dict(sd)
    extra["extra_layer.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError) as e:
        load_encoder(write("extra.pt", sd_=extra))
    _one_line(e, "extra_layer.weight", "different architecture")


def test_refuses_sizes_beyond_any_real_encoder_before_building(tmp_path):
    etype = "Encoder4Editing"
    sd = {"input_layer.0.weight": torch.zeros(8, 3, 3, 3)}
    for i in range(300):  # a crafted file with hundreds of empty units
        sd[f"body.{i}.res_layer.1.weight"] = torch.zeros(8, 8, 1, 1)
    path = write_encoder_checkpoint(tmp_path / "deep.pt", sd, encoder_opts(etype, output_size=SIZE))
    with pytest.raises(CheckpointError) as e:
        load_encoder(path)
    _one_line(e, "deep.pt", "backbone units", "not loaded")
    many = encoder_state_dict(etype, n_styles=N_STYLES, units=UNITS, widths=WIDTHS, w_dim=W_DIM)
    for k in range(N_STYLES, 80):  # 80 style heads, sharing one tiny tensor
        many[f"styles.{k}.linear.weight"] = many["styles.0.linear.weight"]
    path = write_encoder_checkpoint(tmp_path / "heads.pt", many, encoder_opts(etype, output_size=SIZE))
    with pytest.raises(CheckpointError) as e:
        load_encoder(path)
    _one_line(e, "heads.pt", "number of style heads is 80", "not loaded")


def test_a_generator_file_is_not_an_encoder(tmp_path):
    from tests.checkpoint_factories import rosinality_state_dict, write_rosinality_checkpoint

    path = write_rosinality_checkpoint(tmp_path / "g.pt", rosinality_state_dict(16))
    with pytest.raises(CheckpointError) as e:
        load_encoder(path)
    _one_line(e, "generator checkpoint, not an encoder")
    with pytest.raises(CheckpointError) as e:
        load_encoder(tmp_path / "missing.pt")
    _one_line(e, "no such file")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "weights.safetensors"))
    with pytest.raises(CheckpointError) as e:
        load_encoder(tmp_path / "weights.safetensors")
    _one_line(e, "not a PyTorch (torch.save) file", "e4e")


def test_hostile_pickle_in_opts_is_refused_without_running(tmp_path):
    """An encoder file whose 'opts' asks for os.system: refused in one line, nothing runs."""
    from tests.checkpoint_factories import Op, write_pt_zip

    marker = tmp_path / "ran"
    data = Op().raw(b"}").str("opts").glob("os", "system").mark().str(f"touch {marker}").tuple().reduce() \
        .raw(b"s").done()
    path = write_pt_zip(tmp_path / "evil_e4e.pt", data)
    with pytest.raises(UnsafeCheckpointError) as e:
        load_encoder(path)
    _one_line(e, "evil_e4e.pt", "os.system")
    assert not marker.exists()


def test_bad_images_are_one_line_errors(tmp_path):
    enc = load_encoder(_make(tmp_path, "e4e")[0])
    with pytest.raises(InputError, match=r"\[N, 3, H, W\]"):
        enc.encode(torch.zeros(1, 4, 64, 64))
    with pytest.raises(InputError, match="NaN"):
        enc.encode(torch.full((1, 3, 64, 64), float("nan")))
    G = load_generator(write_encoder_checkpoint(
        tmp_path / "other.pt", encoder_state_dict("Encoder4Editing", n_styles=2 * 4 - 2, units=UNITS, widths=WIDTHS,
                                                  w_dim=W_DIM),
        encoder_opts("Encoder4Editing", output_size=16), decoder_sd=decoder_state_dict(16, style_dim=W_DIM),
        latent_avg=random_latent_avg(6, W_DIM)))
    with pytest.raises(InputError) as e:
        enc.check_generator(G)
    _one_line(e, "8 x 32", "6 x 32")


# ----------------------------------------------------------------------------------------------
# nada invert --encoder
# ----------------------------------------------------------------------------------------------


def _photo(tmp_path, w: int = 70, h: int = 60):
    from PIL import Image

    x = sample_images(1, max(w, h), seed=21)[0, :, :h, :w]
    arr = ((x + 1) * 127.5).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
    path = tmp_path / "photo.png"
    Image.fromarray(arr).save(path)
    return path, x


def test_cli_invert_with_encoder_only(tmp_path, capsys):
    """--steps 0: the latents are the encoder's codes of the centre crop; the decoder in the same file
    serves as the generator."""
    from nada_core.cli import main
    from nada_core.editing.latents import load_latents

    path, sd, _, la = _make(tmp_path, "e4e")
    photo, x = _photo(tmp_path)
    out = tmp_path / "out"
    rc = main(["invert", "--generator", str(path), "--encoder", str(path), "--image", str(photo), "--steps", "0",
               "--out", str(out), "--quiet", "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    lat = load_latents(out / "latents.safetensors")
    left = (70 - 60) // 2
    crop = x[None, :, :, left:left + 60]
    _close(lat.ws, reference_encode(sd, crop, "Encoder4Editing", la)[0])
    report = json.loads((out / "inversion.json").read_text())
    assert report["steps"] == 0 and report["encoder"] == str(path) and report["space"] == "w+"
    assert lat.provenance["encoder_type"] == "Encoder4Editing" and lat.provenance["source"] == "encoder"
    assert (out / "comparison.png").exists()


def test_cli_encoder_codes_start_the_optimisation(tmp_path, capsys):
    from nada_core.cli import main
    from nada_core.editing.latents import load_latents

    path, sd, _, la = _make(tmp_path, "psp")
    photo, _ = _photo(tmp_path)
    outs = {}
    for name, extra in (("enc", ["--encoder", str(path)]), ("plain", [])):
        rc = main(["invert", "--generator", str(path), *extra, "--image", str(photo), "--steps", "2", "--lr", "1e-6",
                   "--out", str(tmp_path / name), "--quiet", "--device", "cpu"])
        assert rc == 0, capsys.readouterr().err
        outs[name] = load_latents(tmp_path / name / "latents.safetensors").ws
    codes = load_latents(tmp_path / "enc" / "latents.safetensors")
    # With a vanishing learning rate the result stays near its start (the encoder's codes, up to the
    # optimiser's small initial code noise), far from where a plain inversion starts (w_avg).
    first = reference_encode(sd, _photo(tmp_path)[1][None, :, :, 5:65], "GradualStyleEncoder", la)[0]
    assert float((outs["enc"] - first).abs().max()) < 0.1 < float((outs["plain"] - first).abs().max())
    assert codes.provenance["source"] == "inversion" and codes.provenance["encoder_type"] == "GradualStyleEncoder"


def test_cli_encoder_flags_are_checked(tmp_path, capsys):
    from nada_core.cli import main

    path = _make(tmp_path, "e4e")[0]
    photo, _ = _photo(tmp_path)
    rc = main(["invert", "--generator", str(path), "--image", str(photo), "--encoder-iters", "3",
               "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and "--encoder-iters needs --encoder" in err and len(err.splitlines()) == 1
    other = _make(tmp_path, "restyle_psp", name="r.pt")[0]
    G16 = tmp_path / "g16.pt"
    from tests.checkpoint_factories import rosinality_state_dict, write_rosinality_checkpoint

    write_rosinality_checkpoint(G16, rosinality_state_dict(16, style_dim=W_DIM))
    rc = main(["invert", "--generator", str(G16), "--encoder", str(other), "--image", str(photo), "--steps", "0",
               "--out", str(tmp_path / "o2"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and "8 x 32 codes" in err and len(err.splitlines()) == 1


# ----------------------------------------------------------------------------------------------
# Nodes (called directly, under inference mode as ComfyUI runs them)
# ----------------------------------------------------------------------------------------------


def test_encoder_nodes(tmp_path, monkeypatch):
    from nodes import NODE_CLASS_MAPPINGS as NODES
    from nodes.common import NadaNodeError

    models = tmp_path / "models"
    (models / "encoders").mkdir(parents=True)
    monkeypatch.setenv("NADA_MODELS_DIR", str(models))
    path, sd, _, la = _make(models / "encoders", "e4e", name="e4e_tiny.pt")
    loader = NODES["NadaLoadEncoder"]
    assert loader.INPUT_TYPES()["required"]["encoder_name"][0] == ["e4e_tiny.pt"]
    assert loader.VALIDATE_INPUTS("nope.pt") is not True
    with pytest.raises(NadaNodeError) as e:
        loader().load("nope.pt")
    _one_line(e, "NADA Load Encoder", "nope.pt", "encoders")
    G = load_generator(path)  # the decoder in the same file: the generator the encoder was made for
    photo = sample_images(2, 40, seed=5)
    comfy = ((photo + 1) / 2).permute(0, 2, 3, 1).contiguous()
    with torch.inference_mode():
        enc = loader().load("e4e_tiny.pt")[0]
        latent, recon = NODES["NadaEncodeImage"]().encode(G, enc, comfy, "crop", 5)
        inv_latent, _ = NODES["NadaInvertImage"]().invert(G, comfy, "w+", 1, "crop", 0, encoder=enc)
        plain_latent, _ = NODES["NadaInvertImage"]().invert(G, comfy, "w+", 1, "crop", 0)
    assert latent.ws.shape == (2, N_STYLES, W_DIM) and recon.shape == (2, SIZE, SIZE, 3)
    assert float(recon.min()) >= 0 and float(recon.max()) <= 1
    _close(latent.ws, reference_encode(sd, photo, "Encoder4Editing", la)[0])
    assert latent.lineage_sha256 == G.source_sha256
    # One step from the encoder's codes stays near them; from w_avg it does not.
    near, far = (float((x.ws - latent.ws).abs().mean()) for x in (inv_latent, plain_latent))
    assert near < 0.2 * far, (near, far)


def test_info_describes_the_decoder_of_an_encoder_file(tmp_path, capsys):
    from nada_core.cli import main

    path = _make(tmp_path, "restyle_e4e")[0]
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "'decoder' of an e4e / pSp / ReStyle encoder checkpoint" in out and "32 x 32 px" in out


def test_encoding_many_images_stops_when_asked(tmp_path):
    from nada_core.encoders.apply import encode_images
    from nada_core.errors import Interrupted

    enc = load_encoder(_make(tmp_path, "e4e")[0])
    photos = [((sample_images(1, 40, seed=s)[0] + 1) / 2) for s in range(3)]
    seen = []
    with pytest.raises(Interrupted, match="1 of 3"):
        encode_images(enc, photos, on_image=lambda done, total: seen.append(done), should_stop=lambda: bool(seen))
    assert seen == [1]
