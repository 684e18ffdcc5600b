"""Freed CPU memory kept for reuse while training (nada_core.cpu_memory): page faults of a repeated
large allocation, the policy restored on leaving, nesting, the opt-outs, and the trainer using it."""

from __future__ import annotations

import resource
import subprocess
import sys
import textwrap

import pytest
import torch

from nada_core import cpu_memory
from nada_core.cpu_memory import applies, reuse_freed_memory

glibc_only = pytest.mark.skipif(cpu_memory._glibc() is None, reason="the allocator policy is glibc's (Linux)")

# Runs in a fresh interpreter (main thread, main arena, no earlier mallopt). One "step" allocates,
# fills and frees tensors of 16-64 MiB (glibc maps blocks above 32 MiB one by one) with small Python
# allocations in between, as a training step does; the minor page faults of each step are counted.
_SIZES_MIB = (48, 64, 32, 64, 16)
_PROBE = textwrap.dedent(f"""
    import json, resource, torch
    from nada_core.cpu_memory import reuse_freed_memory

    def rss_mib():
        return int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize() >> 20

    def step():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        tensors = [torch.empty(n << 18).fill_(1.0) for n in {_SIZES_MIB}]
        small = [torch.randn(100) for _ in range(50)]
        del tensors, small
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    out = {{"outside": [step() for _ in range(3)]}}
    with reuse_freed_memory("cpu") as on:
        out["applied"] = on
        out["inside"] = [step() for _ in range(4)]
        with reuse_freed_memory("cpu"):  # nested: the outer one stays on after the inner one leaves
            pass
        out["inside"] += [step() for _ in range(3)]
        out["rss_inside"] = rss_mib()
    out["rss_after"] = rss_mib()
    out["after"] = [step()]
    print(json.dumps(out))
""")


def _probe(env_extra: dict | None = None) -> dict:
    import json
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "NADA_REUSE_CPU_MEMORY"}
    env.update(env_extra or {})
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


_STEP_PAGES = (sum(_SIZES_MIB) << 20) // resource.getpagesize()


@glibc_only
def test_inside_the_context_freed_large_blocks_are_reused_without_page_faults():
    r = _probe()
    assert r["applied"] is True
    assert min(r["outside"]) > _STEP_PAGES // 2  # glibc maps and zero-fills them afresh every step
    # After a warm-up step or two the heap holds them: the last steps (after a nested context left) fault nothing.
    assert sum(r["inside"][-4:]) < _STEP_PAGES // 20, r["inside"]
    # On leaving the freed memory goes back to the system, and the next step faults its pages in again.
    assert r["rss_after"] < r["rss_inside"] - 100
    assert r["after"][0] > _STEP_PAGES // 4


@glibc_only
@pytest.mark.parametrize("env", [{"NADA_REUSE_CPU_MEMORY": "0"}, {"MALLOC_MMAP_MAX_": "65536"}],
                         ids=["opt-out", "user-policy"])
def test_the_user_keeps_their_own_policy(env):
    r = _probe(env)
    assert r["applied"] is False and min(r["inside"]) > _STEP_PAGES // 2


def test_it_applies_to_cpu_work_only(monkeypatch):
    monkeypatch.delenv("NADA_REUSE_CPU_MEMORY", raising=False)
    for k in cpu_memory._USER_ENV:
        monkeypatch.delenv(k, raising=False)
    assert not applies("cuda") and not applies(torch.device("meta"))
    with reuse_freed_memory("cuda") as on:
        assert on is False
    assert applies("cpu") == (cpu_memory._glibc() is not None)
    monkeypatch.setattr(cpu_memory, "_glibc", lambda: None)  # musl, macOS, Windows
    assert not applies("cpu")
    with reuse_freed_memory("cpu") as on:
        assert on is False


def test_the_policy_is_restored_when_training_fails_inside(monkeypatch):
    calls = []

    class FakeLibc:
        def mallopt(self, param, value):
            calls.append((param, value))
            return 1

        def malloc_trim(self, pad):
            calls.append(("trim", pad))
            return 1

    monkeypatch.setattr(cpu_memory, "_glibc", lambda: FakeLibc())
    monkeypatch.delenv("NADA_REUSE_CPU_MEMORY", raising=False)
    for k in cpu_memory._USER_ENV:
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(RuntimeError):
        with reuse_freed_memory("cpu"):
            assert calls == [(cpu_memory.M_MMAP_MAX, 0), (cpu_memory.M_TRIM_THRESHOLD, -1)]
            raise RuntimeError("boom")
    assert calls[2:] == [*cpu_memory._RESTORE, ("trim", 0)]
    assert cpu_memory._depth == 0


def test_the_trainer_runs_its_steps_inside_the_context(monkeypatch, tmp_path):
    from tests.clip_factory import load_tiny_clip
    from tests.factories import tiny_generator
    from nada_core.guidance.directions import text_direction
    from nada_core.training import trainer as trainer_module
    from nada_core.training.trainer import NadaTrainer, TrainConfig

    seen = []
    real = trainer_module.reuse_freed_memory

    class Spy:
        def __init__(self, device, enabled=True):
            self.inner = real(device, enabled=enabled)
            seen.append(("enter", str(device)))

        def __enter__(self):
            return self.inner.__enter__()

        def __exit__(self, *exc):
            seen.append(("exit",))
            return self.inner.__exit__(*exc)

    monkeypatch.setattr(trainer_module, "reuse_freed_memory", Spy)
    clip = load_tiny_clip(tmp_path)
    tr = NadaTrainer(tiny_generator(16), clip, text_direction(clip, "photo", "sketch", templates=False),
                     TrainConfig(steps=2, batch=1, num_layers="all", preview_every=0), "cpu")
    steps_inside = []
    result = tr.run(on_progress=lambda info: steps_inside.append((info.step, len(seen))))
    assert result.steps_done == 2
    assert seen == [("enter", "cpu"), ("exit",)]
    assert steps_inside == [(1, 1), (2, 1)]  # both steps ran between entering and leaving


def test_a_checkpointing_run_keeps_the_default_policy(monkeypatch, tmp_path):
    """Checkpointing asks to save memory, and reusing freed memory costs peak memory: not applied."""
    from tests.clip_factory import load_tiny_clip
    from tests.factories import tiny_generator
    from nada_core.guidance.directions import text_direction
    from nada_core.training import trainer as trainer_module
    from nada_core.training.trainer import NadaTrainer, TrainConfig

    seen = []
    real = trainer_module.reuse_freed_memory

    def spy(device, enabled=True):
        seen.append(enabled)
        return real(device, enabled=enabled)

    monkeypatch.setattr(trainer_module, "reuse_freed_memory", spy)
    clip = load_tiny_clip(tmp_path)
    direction = text_direction(clip, "photo", "sketch", templates=False)
    for checkpointing in (False, True):
        NadaTrainer(tiny_generator(16), clip, direction, TrainConfig(steps=1, batch=1, num_layers="all", preview_every=0,
                                                                     checkpointing=checkpointing), "cpu").run()
    assert seen == [True, False]
    with reuse_freed_memory("cpu", enabled=False) as on:
        assert on is False
