"""Living next to spacepxl/dfl ComfyUI-StyleGan: their STYLEGAN model and STYLEGAN_LATENT tensors.

Their ``STYLEGAN`` object is an NVIDIA ``Generator`` module unpickled with NVIDIA's code (a
``torch_utils.persistence`` class). The stand-in here is built the same way an unpickler builds it:
one ``torch.nn.Module`` subclass per pickled class name, carrying NVIDIA's ``_orig_module_src``,
with the pickled ``__dict__`` (from :mod:`checkpoint_factories`, the same layout as our ``.pkl``
tests). Every method of the stand-in raises and records the call, so converting it proves that
nothing of the foreign object runs.
"""

from __future__ import annotations

import pytest
import torch

import checkpoint_factories as cf
import foreign_pack_factories as ff
from nada_core.editing.latents import Latents, latents_from_seeds, render
from nada_core.editing.raw_latents import latents_from_tensor, latents_to_tensor
from nada_core.errors import CheckpointError, InputError
from nada_core.formats.checkpoints import lineage_sha256, load_generator
from nada_core.formats.nvidia_module import generator_from_nvidia_module, nvidia_module_layout
from reference_stylegan2 import nvidia_reference

SETTINGS = dict(img_resolution=16, z_dim=16, w_dim=16, num_layers=2, channel_base=128, channel_max=16)
CALLS = ff.FOREIGN_CALLS
live_module = ff.live_nvidia_module


@pytest.fixture
def their_generator():
    """(live module like theirs, NVIDIA-named tensors, kwargs)."""
    CALLS.clear()
    tensors = cf.nvidia_generator_tensors(seed=21, **SETTINGS)
    kwargs = cf.nvidia_generator_kwargs(**SETTINGS)
    module = live_module(cf.build_nvidia_generator(tensors, kwargs))
    yield module, tensors, kwargs
    assert CALLS == [], f"methods of the foreign module were called: {CALLS}"


def test_their_generator_becomes_ours_without_running_it(their_generator, tmp_path):
    module, tensors, kwargs = their_generator
    G = generator_from_nvidia_module(module)
    # Same weights as reading the .pkl the other pack unpickled: bit for bit, same images.
    G_file = load_generator(cf.write_nvidia_pkl(tmp_path / "same.pkl", tensors, kwargs))
    sd, sd_file = G.state_dict(), G_file.state_dict()
    assert sd.keys() == sd_file.keys() and all(torch.equal(sd[k], sd_file[k]) for k in sd)
    z = torch.randn(2, SETTINGS["z_dim"], generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        got = G(z, truncation_psi=0.7, noise_mode="const")
    expected = nvidia_reference(tensors, z, 0.7)  # independent float64 implementation on their tensors
    assert (got - expected).abs().max() <= 1e-5 * max(1.0, expected.abs().max().item())
    assert not any(p.requires_grad for p in G.parameters()) and not G.training
    # Lineage: a hash of the weights, the same for the same object converted twice.
    assert lineage_sha256(G) == lineage_sha256(generator_from_nvidia_module(module))
    assert G.metadata["format"] == "stylegan2-ada-module"
    module2 = live_module(cf.build_nvidia_generator(cf.nvidia_generator_tensors(seed=22, **SETTINGS), kwargs))
    assert lineage_sha256(generator_from_nvidia_module(module2)) != lineage_sha256(G)


def test_their_layout_and_device_read_from_attributes(their_generator):
    module, tensors, _ = their_generator
    layout = nvidia_module_layout(module)
    assert layout == {"num_ws": 6, "w_dim": 16, "device": torch.device("cpu")}


def test_generators_we_cannot_represent_are_refused_in_one_line(their_generator):
    module, tensors, kwargs = their_generator
    sg3 = live_module(cf.build_nvidia_generator(tensors, kwargs, module_src="def filtered_lrelu(): pass\n"))
    with pytest.raises(CheckpointError, match="StyleGAN3") as err:
        generator_from_nvidia_module(sg3)
    assert "\n" not in str(err.value)
    cond = cf.nvidia_generator_kwargs(**SETTINGS, c_dim=4)
    conditional = live_module(cf.build_nvidia_generator(cf.nvidia_generator_tensors(seed=2, c_dim=4, **SETTINGS),
                                                        cond))
    # class-conditional modules are supported since the conditional mapping landed
    G_cond = generator_from_nvidia_module(conditional)
    assert G_cond.config.c_dim == 4
    with torch.no_grad():
        assert G_cond.mapping(torch.randn(2, G_cond.z_dim), c=torch.eye(4)[:2]).shape[1:] == (6, 16)
    for wrong in (torch.zeros(2, 8, 16), {"G_ema": 1}, None):
        with pytest.raises(InputError, match="expected an NVIDIA StyleGAN generator"):
            generator_from_nvidia_module(wrong)


def test_their_latents_render_in_ours_and_ours_in_theirs(their_generator):
    module, tensors, _ = their_generator
    G = generator_from_nvidia_module(module)
    # Their latents: the output of NVIDIA's G.mapping, [B, num_ws, w_dim], computed independently here.
    ours = latents_from_seeds(G, "0-2", truncation_psi=0.8)
    raw = ours.ws.clone()  # what their Generate StyleGAN Latent hands on for these z
    lat = latents_from_tensor(raw, G)
    assert isinstance(lat, Latents) and lat.lineage_sha256 == lineage_sha256(G)
    assert torch.equal(lat.ws, raw) and lat.ws.data_ptr() != raw.data_ptr()  # a copy: their tensor untouched
    with torch.no_grad():
        expected = nvidia_reference(tensors, None, ws=raw)
    got = render(G, lat)
    assert (got - expected).abs().max() <= 1e-5 * max(1.0, expected.abs().max().item())
    # Unknown generator: unknown lineage, still renders.
    assert latents_from_tensor(raw).lineage_sha256 is None
    # Back to theirs: a new plain tensor of their shape; a plain W code is broadcast for their model.
    back = latents_to_tensor(lat, num_ws=6)
    assert type(back) is torch.Tensor and back.shape == (3, 6, 16) and torch.equal(back, raw)
    back[:] = 0
    assert not torch.equal(lat.ws, back)  # they may modify it freely
    w_only = Latents(raw[:, :1].clone(), "w")
    assert torch.equal(latents_to_tensor(w_only, num_ws=6), raw[:, :1].expand(-1, 6, -1))


def test_bad_foreign_latents_are_one_line(their_generator):
    module, _, _ = their_generator
    G = generator_from_nvidia_module(module)
    cases = [(torch.zeros(2, 8, 16), "do not fit this generator"), (torch.zeros(2, 6, 12), "do not fit"),
             (torch.zeros(4), "shape"), (torch.full((1, 6, 16), float("nan")), "not finite"),
             (torch.zeros(1, 6, 16, dtype=torch.int64), "not finite"), ("latent", "expected a latent tensor")]
    for value, message in cases:
        with pytest.raises(InputError, match=message) as err:
            latents_from_tensor(value, G)
        assert "\n" not in str(err.value)


def test_interop_nodes_translate_between_the_packs(their_generator):
    from nodes import types as T
    from nodes.interop_nodes import NadaGeneratorFromStyleGAN, NadaLatentFromStyleGAN, NadaLatentToStyleGAN
    from nodes.common import NadaNodeError

    module, tensors, _ = their_generator
    (G,) = NadaGeneratorFromStyleGAN().convert(module)
    raw = latents_from_seeds(G, [5, 6]).ws
    (lat,) = NadaLatentFromStyleGAN().convert(raw, G)
    assert lat.lineage_sha256 == lineage_sha256(G)
    (back,) = NadaLatentToStyleGAN().convert(lat, module)
    assert torch.equal(back.cpu(), raw) and back.device == torch.device("cpu")
    with pytest.raises(NadaNodeError, match="do not fit that StyleGAN model"):
        NadaLatentToStyleGAN().convert(Latents(torch.zeros(1, 8, 16)), module)
    with pytest.raises(NadaNodeError, match="NADA Generator From StyleGAN: expected an NVIDIA"):
        NadaGeneratorFromStyleGAN().convert(raw)
    # The socket types: ours never share a name with theirs.
    assert T.LATENT == "NADA_LATENT" and T.LATENT not in T.FOREIGN_TYPES and T.GENERATOR not in T.FOREIGN_TYPES
    assert NadaLatentFromStyleGAN.INPUT_TYPES()["required"]["stylegan_latent"][0] == "STYLEGAN_LATENT"
    assert NadaLatentToStyleGAN.RETURN_TYPES == ("STYLEGAN_LATENT",)
    assert NadaGeneratorFromStyleGAN.INPUT_TYPES()["required"]["stylegan_model"][0] == "STYLEGAN"


@pytest.mark.parametrize("case", ["parameters_list", "nan_weight", "int_weight"])
def test_their_generator_with_odd_attributes_is_one_line(their_generator, case):
    """A ``_parameters`` that is a list raised AttributeError; NaN or integer weights were taken as they were."""
    module = their_generator[0]
    mapping = object.__getattribute__(module, "__dict__")["_modules"]["mapping"]
    fc = object.__getattribute__(mapping, "__dict__")["_modules"]["fc0"]
    params = object.__getattribute__(fc, "__dict__")
    if case == "parameters_list":
        params["_parameters"] = [1, 2]
    else:
        w = params["_parameters"]["weight"]
        params["_parameters"] = {**params["_parameters"],
                                 "weight": torch.full_like(w, float("nan")) if case == "nan_weight" else w.long()}
    with pytest.raises(CheckpointError) as info:
        generator_from_nvidia_module(module)
    assert "\n" not in str(info.value) and "other node pack" in str(info.value)
