"""Generic fuzz of every file reader: truncations and seeded byte flips of a valid tiny file.

Each mutated file must either load, giving finite tensors of the original's shapes, or be
refused with one :class:`~nada_core.errors.NadaError` line; never another exception type (a
traceback in the CLI, an ugly error in ComfyUI). A few hundred loads of files of a few to a
hundred kilobytes: seconds in all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

import checkpoint_factories as cf
import checkpoint_factories_sg3 as f3
import tf_factories as tff
from encoder_factories import encoder_opts, encoder_state_dict, random_latent_avg, write_encoder_checkpoint
from nada_core.domains import load_domain, new_domain, save_domain
from nada_core.editing.direction_files import load_direction, save_direction
from nada_core.editing.latents import latents_from_seeds, load_latents, save_latents
from nada_core.editing.semantic import Directions
from nada_core.encoders import load_encoder
from nada_core.errors import NadaError
from nada_core.formats.checkpoints import load_generator, save_generator

CUTS = 8  # truncation offsets per file (plus the first and last bytes)
FLIPS = 10  # files with 1-3 seeded byte flips each


def _tensors(obj: Any) -> dict[str, torch.Tensor]:
    """Comparable ``{name: tensor}`` of whatever a reader returned."""
    if hasattr(obj, "state_dict"):
        return dict(obj.state_dict())
    if hasattr(obj, "vectors"):
        return {"vectors": obj.vectors, "values": obj.values}
    if hasattr(obj, "ws"):
        return {"ws": obj.ws}
    if hasattr(obj, "values") and isinstance(obj.values, dict):
        return dict(obj.values)
    raise TypeError(type(obj))


def _encoder_tensors(enc) -> dict[str, torch.Tensor]:
    return dict(enc.net.state_dict())


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, tuple[Callable, Path]]:
    d = tmp_path_factory.mktemp("fuzz")
    out: dict[str, tuple[Callable, Path]] = {}
    sd = cf.rosinality_state_dict(size=8, style_dim=8, n_mlp=1, seed=3)
    out["rosinality_pt"] = (load_generator, cf.write_rosinality_checkpoint(d / "r.pt", sd, latent_avg=torch.randn(8)))
    out["rosinality_legacy_pt"] = (load_generator, cf.write_rosinality_checkpoint(d / "rl.pt", sd, legacy=True,
                                                                                  latent_avg=torch.randn(8)))
    s = dict(img_resolution=8, z_dim=8, w_dim=8, num_layers=1, channel_base=64, channel_max=8)
    nv = cf.nvidia_generator_tensors(seed=4, **s)
    out["nvidia_pkl"] = (load_generator, cf.write_nvidia_pkl(d / "n.pkl", nv, cf.nvidia_generator_kwargs(**s)))
    out["dfl_safetensors"] = (load_generator, tff.write_dfl_safetensors(d / "dfl.safetensors", nv,
                                                                        cf.nvidia_generator_kwargs(**s)))
    t, k, layers = f3.fixture_generator("t")
    out["stylegan3_pkl"] = (load_generator, f3.write_nvidia3_pkl(d / "sg3.pkl", t, k, layers))
    kw = tff.tf_generator_settings()
    out["tf_pkl"] = (load_generator, tff.write_tf_pkl(d / "tf.pkl", tff.tf_generator_variables(kw, seed=1), kw))
    G = load_generator(out["rosinality_pt"][1])
    out["nada_safetensors"] = (load_generator, save_generator(G, d / "g.safetensors"))
    esd = encoder_state_dict("Encoder4Editing", n_styles=4, units=(1, 2, 3, 1), widths=(8, 16, 24, 32), w_dim=8)
    out["e4e_pt"] = (load_encoder, write_encoder_checkpoint(d / "e4e.pt", esd, encoder_opts("Encoder4Editing",
                                                            output_size=8), latent_avg=random_latent_avg(4, 8)))
    dom = new_domain(G, "domain", include_torgb=True)
    for v in dom.values.values():
        v.normal_()
    out["domain"] = (load_domain, save_domain(dom, d / "d.safetensors"))
    vec = np.random.default_rng(0).standard_normal((1, 8)).astype(np.float32)
    np.save(d / "dir.npy", vec)
    np.savez_compressed(d / "dir.npz", boundary=vec)
    torch.save(torch.from_numpy(vec), d / "dir.pt")
    out["direction_npy"] = (load_direction, d / "dir.npy")
    out["direction_npz"] = (load_direction, d / "dir.npz")
    out["direction_pt"] = (load_direction, d / "dir.pt")
    dirs = Directions(torch.from_numpy(vec), torch.ones(1), "sefa", [0, 1], "ab" * 32, ["x"], {"a": 1})
    out["direction_safetensors"] = (load_direction, save_direction(dirs, d / "dir.safetensors"))
    lat = latents_from_seeds(G, [1, 2])
    out["latents_safetensors"] = (load_latents, save_latents(lat, d / "lat.safetensors"))
    np.savez(d / "projected_w.npz", w=lat.ws.numpy())
    np.save(d / "lat.npy", lat.ws.numpy())
    out["latents_projected_w_npz"] = (load_latents, d / "projected_w.npz")
    out["latents_npy"] = (load_latents, d / "lat.npy")
    return out


def _mutations(data: bytes, seed: int):
    rng = np.random.default_rng(seed)
    n = len(data)
    for cut in sorted({1, 9, n // 2, n - 1} | set(rng.integers(1, n, CUTS).tolist())):
        yield f"cut at {cut}", data[:cut]
    for i in range(FLIPS):
        b = bytearray(data)
        # half the flips land in the first 512 bytes, where headers, pickles' opcodes and JSON live
        span = min(n, 512) if i % 2 else n
        for _ in range(int(rng.integers(1, 4))):
            b[int(rng.integers(0, span))] ^= int(rng.integers(1, 256))
        yield f"flip {i}", bytes(b)


@pytest.mark.parametrize("kind", ["rosinality_pt", "rosinality_legacy_pt", "nvidia_pkl", "dfl_safetensors",
                                  "stylegan3_pkl", "tf_pkl", "nada_safetensors", "e4e_pt", "domain", "direction_npy",
                                  "direction_npz", "direction_pt", "direction_safetensors", "latents_safetensors",
                                  "latents_projected_w_npz", "latents_npy"])
def test_mutated_files_load_cleanly_or_fail_in_one_line(files, tmp_path, kind):
    load, path = files[kind]
    extract = _encoder_tensors if kind == "e4e_pt" else _tensors
    reference = {k: tuple(v.shape) for k, v in extract(load(path)).items()}
    data = path.read_bytes()
    target = tmp_path / path.name
    outcomes = {"loaded": 0, "refused": 0}
    for what, blob in _mutations(data, seed=len(data)):
        target.write_bytes(blob)
        try:
            got = extract(load(target))
        except NadaError as err:
            msg = str(err)
            assert msg and "\n" not in msg, f"{kind}, {what}: {msg!r}"
            outcomes["refused"] += 1
            continue
        except Exception as err:  # noqa: BLE001 - the failure this test exists to catch
            pytest.fail(f"{kind}, {what}: {type(err).__name__} escaped: {err}")
        assert {k: tuple(v.shape) for k, v in got.items()} == reference, f"{kind}, {what}: shapes changed"
        for name, t in got.items():
            if t.is_floating_point():
                assert bool(torch.isfinite(t).all()), f"{kind}, {what}: {name} is not finite"
        outcomes["loaded"] += 1
    assert outcomes["refused"] >= CUTS // 2, outcomes  # the truncations, at least, are refused
