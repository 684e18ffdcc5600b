"""Drive the real ComfyUI in-process, from a worker subprocess, for the pack's integration tests.

ComfyUI keeps global state (its ``nodes`` module, model folders, the interrupt flag) and has a
top-level module named ``nodes`` like this repository's package, so it runs in a separate Python
process: :class:`ComfyWorker` starts ``python tests/comfy_harness.py --worker BASE`` and talks to it
with one JSON object per line. The worker boots ComfyUI the way ``main.py`` does (CPU forced in
``comfy.cli_args.args`` before ``comfy.model_management`` is imported, a temporary base directory,
an ``extra_model_paths.yaml``, custom nodes loaded by ``nodes.init_extra_nodes``), then validates
prompts with ``execution.validate_prompt`` and runs them with ``execution.PromptExecutor``, keeping
one executor so ComfyUI's output cache works across prompts as in the server.

It also holds the helpers shared by the ComfyUI and front-end tests: how to point a workflow at the
tiny test models (where ComfyUI is and why it cannot run here: tests/comfy_env.py).
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

try:
    from tests.comfy_env import comfy_root, unavailable_reason
except ImportError:  # run as a script (the worker process): tests/ itself is first on sys.path
    from comfy_env import comfy_root, unavailable_reason

REPO = Path(__file__).resolve().parents[1]
PACK_DIR_NAME = "ComfyUI-NADA"
# How the pack's folder appears in ComfyUI's messages (prepare_base links it there). Match this, not
# the bare name: a checkout called ComfyUI-NADA may hold ComfyUI itself (CI unpacks it into
# .ci/comfyui/), and ComfyUI's own import problems must not count as the pack's.
PACK_PATH_MARK = f"custom_nodes{os.sep}{PACK_DIR_NAME}"
PROTOCOL_PREFIX = "@@nada@@ "
# Names the shared workflows use for model files, and the tiny stand-ins the tests provide.
TINY_FFHQ = "tiny_ffhq.safetensors"  # stands in for stylegan2-ffhq-config-f.pt (a rosinality .pt)
TINY_ENCODER = "tiny_e4e.pt"  # stands in for e4e_ffhq_encode.pt (the released layout, tiny widths)


# ------------------------------------------------------------------------------------ test models


def make_model_tree(base: Path) -> dict[str, Any]:
    """Tiny models under the names the workflows use (FFHQ renamed, see :func:`tiny_overrides`).

    ``base/models/stylegan/tiny_ffhq.safetensors`` (source), ``.../nada/ffhq_sketch.safetensors``
    (an "adapted" generator of the same architecture), ``base/models/open_clip/<CLIP folder>`` (a
    tiny CLIP in the Hugging Face layout), ``base/input/portrait.png`` and
    ``base/input/nada_examples/*.png`` and ``base/models/encoders/tiny_e4e.pt`` (for e4e_ffhq_encode.pt).
    """

    from nada_core.formats.checkpoints import save_generator
    from tests.clip_factory import save_tiny_clip
    from tests.factories import tiny_generator
    from workflows.build_workflows import CLIP_FOLDER, EXAMPLES_FOLDER, PORTRAIT

    stylegan = base / "models" / "stylegan"
    (stylegan / "nada").mkdir(parents=True, exist_ok=True)
    save_generator(tiny_generator(32, seed=0), stylegan / TINY_FFHQ)
    save_adapted_copy(stylegan / TINY_FFHQ, stylegan / "nada" / "ffhq_sketch.safetensors")
    _save_tiny_domains(stylegan / TINY_FFHQ, stylegan / "domains")
    clip_root = base / "models" / "open_clip"
    clip_root.mkdir(parents=True, exist_ok=True)
    folder = Path(save_tiny_clip(clip_root, layout="hf", seed=0))
    folder.rename(clip_root / CLIP_FOLDER)
    _draw_inputs(base / "input", PORTRAIT, EXAMPLES_FOLDER)
    _write_tiny_encoder(base / "models" / "encoders" / TINY_ENCODER)
    return {"ffhq": TINY_FFHQ, "encoder": TINY_ENCODER}


def _write_tiny_encoder(path: Path) -> None:
    """An e4e checkpoint for the tiny 32 px source (8 W+ entries of 32), seeded random weights."""
    from tests.encoder_factories import encoder_opts, encoder_state_dict, random_latent_avg, write_encoder_checkpoint

    path.parent.mkdir(parents=True, exist_ok=True)
    sd = encoder_state_dict("Encoder4Editing", n_styles=8, units=(1, 1, 2, 1), widths=(8, 16, 24, 32), w_dim=32)
    write_encoder_checkpoint(path, sd, encoder_opts("Encoder4Editing", output_size=32),
                             latent_avg=random_latent_avg(8, 32))


def _save_tiny_domains(generator_file: Path, folder: Path) -> None:
    """The two domain files domain_mixer loads: random vectors on the tiny generator (same lineage)."""
    import torch

    from nada_core.domains import new_domain, save_domain
    from nada_core.formats.checkpoints import load_generator
    from workflows.build_workflows import DOMAIN_A, DOMAIN_B

    G = load_generator(generator_file)
    folder.mkdir(parents=True, exist_ok=True)
    for seed, (name, kind) in enumerate(((DOMAIN_A, "domain"), (DOMAIN_B, "stylespace"))):
        d = new_domain(G, kind, include_torgb=True)
        g = torch.Generator().manual_seed(seed)
        for layer in d.layers:
            d.values[layer.path] = torch.randn(layer.channels, generator=g) * 0.4
        save_domain(d, folder / name)


def _draw_inputs(input_dir: Path, portrait: str, examples: str) -> None:
    """A simple drawn "portrait" (not square) and three line drawings of mixed modes and sizes."""
    import numpy as np
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (80, 96), (196, 170, 150))
    d = ImageDraw.Draw(img)
    d.ellipse((14, 12, 66, 80), fill=(232, 190, 160))
    d.ellipse((26, 36, 34, 42), fill=(40, 40, 60))
    d.ellipse((46, 36, 54, 42), fill=(40, 40, 60))
    d.arc((28, 50, 52, 66), 20, 160, fill=(150, 60, 60), width=2)
    d.rectangle((14, 4, 66, 20), fill=(90, 60, 40))
    img.save(input_dir / portrait)
    folder = input_dir / examples
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, (size, mode) in enumerate([((40, 40), "RGB"), ((50, 30), "RGBA"), ((36, 36), "L")]):
        sketch = Image.new(mode, size, "white" if mode != "RGBA" else (255, 255, 255, 0))
        d = ImageDraw.Draw(sketch)
        for _ in range(12):
            x0, y0, x1, y1 = (int(v) for v in rng.integers(0, min(size), 4))
            d.line((x0, y0, x1, y1), fill="black" if mode != "RGBA" else (0, 0, 0, 255), width=1)
        sketch.save(folder / f"ex{i}.png")


def save_adapted_copy(source: Path, target: Path, seed: int = 1, strength: float = 0.5) -> None:
    """Stand-in for an adapted generator: the source with perturbed synthesis weights, saved so it
    keeps the source's lineage (latents and blends between the two are allowed, as after training)."""
    import torch

    from nada_core.formats.checkpoints import load_generator, save_generator

    G = load_generator(source)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.startswith("synthesis.") and name.endswith("weight"):
                p.add_(torch.randn(p.shape, generator=gen) * strength * p.std())
    save_generator(G, target)


def tiny_overrides(name: str) -> dict[str, dict[str, Any]]:
    """``{node id: {input: value}}`` that make workflow ``name`` run in seconds on the tiny models:
    the FFHQ file name points at the tiny generator, and step/frame/sample counts shrink."""
    from workflows.build_workflows import FFHQ, WORKFLOWS

    shrink = {"NadaTrain": {"steps": 3, "preview_every": 1}, "NadaInvertImage": {"steps": 3},
              "NadaBlendFrames": {"frames": 4}, "NadaImageDirection": {"num_samples": 4}}
    out: dict[str, dict[str, Any]] = {}
    for n in WORKFLOWS[name].nodes:
        change = dict(shrink.get(n.type, {}))
        if n.type == "NadaLoadGenerator" and n.widgets.get("generator_name") == FFHQ:
            change["generator_name"] = TINY_FFHQ
        if n.type == "NadaLoadEncoder":
            change["encoder_name"] = TINY_ENCODER
        if change:
            out[str(n.id)] = change
    return out


def load_api_workflow(name: str, overrides: dict[str, dict[str, Any]] | None = None) -> dict:
    """The API JSON of workflow ``name`` as shipped in ``workflows/api/``, with ``overrides`` applied."""
    from workflows.build_workflows import api_path

    prompt = json.loads(api_path(name).read_text(encoding="utf-8"))
    for node_id, change in (overrides or {}).items():
        for key, value in change.items():
            assert key in prompt[node_id]["inputs"], f"{name} #{node_id} has no input {key}"
            prompt[node_id]["inputs"][key] = value
    return prompt


def prepare_base(base: Path, user_stylegan: Path | None = None) -> None:
    """A ComfyUI base directory with this repository linked as a custom node pack."""
    for sub in ("custom_nodes", "input", "output", "temp", "user", "models"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    link = base / "custom_nodes" / PACK_DIR_NAME
    if not link.exists():
        link.symlink_to(REPO, target_is_directory=True)
    if user_stylegan is not None:
        user_stylegan.mkdir(parents=True, exist_ok=True)
        (base / "extra_model_paths.yaml").write_text(
            f"my_nas:\n    stylegan: {user_stylegan}\n", encoding="utf-8")


# ----------------------------------------------------------------------------------------- client


class WorkerError(RuntimeError):
    pass


class ComfyWorker:
    """A ComfyUI process driven through :func:`worker_main`; one per test module."""

    def __init__(self, base: Path, boot_timeout: float = 180.0) -> None:
        self.base = Path(base)
        self.log_path = self.base / "worker.log"
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
        env.update({k: "1" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", str(self.base)],
                                     cwd=str(self.base), env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._log, start_new_session=True)
        self._lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.boot = self._receive(boot_timeout)
        if not self.boot.get("ok"):
            self.close()
            raise WorkerError(f"ComfyUI worker did not boot: {self.boot.get('error')}\n{self.log_tail()}")

    def _read(self) -> None:
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace")
            if line.startswith(PROTOCOL_PREFIX):
                self._lines.put(json.loads(line[len(PROTOCOL_PREFIX):]))
        self._lines.put(None)

    def _receive(self, timeout: float) -> dict:
        try:
            msg = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise WorkerError(f"ComfyUI worker gave no answer within {timeout:.0f} s\n{self.log_tail()}") from None
        if msg is None:
            raise WorkerError(f"ComfyUI worker exited (code {self.proc.poll()})\n{self.log_tail()}")
        return msg

    def call(self, cmd: str, timeout: float = 120.0, **kwargs) -> dict:
        self.proc.stdin.write((json.dumps({"cmd": cmd, **kwargs}) + "\n").encode())
        self.proc.stdin.flush()
        reply = self._receive(timeout)
        if "error" in reply and not reply.get("ok", True):
            raise WorkerError(f"{cmd} failed in the worker: {reply['error']}")
        return reply

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(20)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


# ----------------------------------------------------------------------------------------- worker


def _reply(out, payload: dict) -> None:
    out.write(PROTOCOL_PREFIX + json.dumps(payload, default=str) + "\n")
    out.flush()


class _LogCapture:
    def __init__(self) -> None:
        import logging

        self.lines: list[str] = []
        capture = self

        class Handler(logging.Handler):
            def emit(self, record):
                capture.lines.append(record.getMessage())

        self.handler = Handler(level=logging.INFO)
        self.stream = logging.StreamHandler(sys.stderr)  # the worker's log file
        self.stream.setLevel(logging.INFO)


class _FakeServer:
    """What ``PromptExecutor`` and the progress handlers use of ComfyUI's ``PromptServer``."""

    def __init__(self) -> None:
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.sockets_metadata: dict = {}
        self.events: list[tuple[str, Any]] = []

    def send_sync(self, event, data, sid=None) -> None:
        if isinstance(event, str):
            self.events.append((event, data))
        else:  # binary preview frames
            self.events.append(("binary", None))

    def queue_updated(self) -> None:
        pass


def _boot(base: Path) -> dict:
    """Boot ComfyUI like main.py does, inside this process; returns what tests need to know."""
    import asyncio
    import logging

    root = comfy_root()
    sys.path.insert(0, str(root))
    capture = _LogCapture()
    logging.getLogger().addHandler(capture.handler)
    logging.getLogger().addHandler(capture.stream)
    logging.getLogger().setLevel(logging.INFO)

    from comfy.cli_args import args  # parsed with ComfyUI's defaults (no command line)

    args.cpu = True  # before comfy.model_management is imported: it decides the device on import
    args.base_directory = str(base)
    args.disable_api_nodes = True
    args.database_url = "sqlite:///:memory:"
    import folder_paths

    folder_paths.set_temp_directory(str(base / "temp"))
    # main.py imports ComfyUI's `utils` package first thing; without that, a later bare `import utils`
    # binds comfy/utils.py instead and comfy_extras/nodes_images.py fails to import.
    import utils.extra_config

    yaml_path = base / "extra_model_paths.yaml"
    if yaml_path.is_file():
        utils.extra_config.load_extra_path_config(str(yaml_path))
    import comfy.model_management as mm
    import comfy.utils
    import execution
    import nodes
    from comfy_execution.progress import get_progress_state
    from comfy_execution.utils import get_executing_context

    asyncio.run(nodes.init_extra_nodes(init_custom_nodes=True, init_api_nodes=False))
    state = {"mm": mm, "nodes": nodes, "execution": execution, "folder_paths": folder_paths, "capture": capture,
             "server": _FakeServer(), "progress": [], "interrupt_at": None, "interrupted_at": None}
    server = state["server"]
    state["executor"] = execution.PromptExecutor(server, cache_type=execution.CacheType.CLASSIC,
                                                 cache_args={"lru": 0, "ram": 0})

    def hook(value, total, preview_image, prompt_id=None, node_id=None):
        # Mirrors main.hijack_progress: the hook is also where ComfyUI notices Cancel.
        ctx = get_executing_context()
        if node_id is None and ctx is not None:
            node_id = ctx.node_id
        if prompt_id is None and ctx is not None:
            prompt_id = ctx.prompt_id
        record = {"node": node_id, "value": value, "max": total, "t": time.monotonic(), "preview": None}
        if preview_image is not None:
            fmt, img, max_size = preview_image
            record["preview"] = {"format": fmt, "size": list(img.size), "mode": img.mode, "max_size": max_size}
        state["progress"].append(record)
        mm.throw_exception_if_processing_interrupted()
        get_progress_state().update_progress(node_id, value, total, preview_image)
        server.send_sync("progress", {"value": value, "max": total, "prompt_id": prompt_id, "node": node_id})
        arm = state["interrupt_at"]
        if arm and node_id == arm["node"] and value >= arm["value"] and state["interrupted_at"] is None:
            state["interrupted_at"] = time.monotonic()
            # Cancel arrives from another thread, as from the server's /interrupt handler; it is
            # set after this hook's own check, so the node's should_stop() must notice it.
            t = threading.Thread(target=mm.interrupt_current_processing, args=(True,))
            t.start()
            t.join()

    comfy.utils.set_progress_bar_global_hook(hook)
    failed = [ln for ln in capture.lines if "IMPORT FAILED" in ln or "Cannot import" in ln]
    ours = {k: v for k, v in nodes.NODE_CLASS_MAPPINGS.items() if k.startswith("Nada")}
    return {"ok": True, "state": state, "import_problems": failed,
            "loaded_module_dirs": dict(nodes.LOADED_MODULE_DIRS), "nada_nodes": sorted(ours)}


def _summarise_events(events) -> dict:
    executing = [d.get("node") for e, d in events if e == "executing" and isinstance(d, dict) and d.get("node")]
    executed = [d.get("node") for e, d in events if e == "executed" and isinstance(d, dict)]
    return {"executing": executing, "executed": executed}


def _handle(state: dict, req: dict) -> dict:
    import asyncio

    cmd = req["cmd"]
    nodes, execution, fp = state["nodes"], state["execution"], state["folder_paths"]
    if cmd == "folders":
        return {name: {"paths": list(fp.folder_names_and_paths[name][0]),
                       "extensions": sorted(fp.folder_names_and_paths[name][1])}
                for name in req["names"] if name in fp.folder_names_and_paths}
    if cmd == "input_types":
        out = {}
        for cls_name in req["classes"]:
            cls = nodes.NODE_CLASS_MAPPINGS[cls_name]
            out[cls_name] = {"input_types": cls.INPUT_TYPES(), "return_types": list(cls.RETURN_TYPES),
                             "output_node": bool(getattr(cls, "OUTPUT_NODE", False)),
                             "display": nodes.NODE_DISPLAY_NAME_MAPPINGS.get(cls_name)}
        return out
    if cmd == "validate":
        valid = asyncio.run(execution.validate_prompt(req["prompt_id"], req["prompt"], None))
        return {"valid": valid[0], "error": valid[1], "outputs": valid[2], "node_errors": valid[3]}
    if cmd == "execute":
        prompt = req["prompt"]
        valid = asyncio.run(execution.validate_prompt(req["prompt_id"], prompt, None))
        if not valid[0]:
            return {"valid": False, "error": valid[1], "node_errors": valid[3]}
        server = state["server"]
        server.events = []
        state["progress"] = []
        state["interrupted_at"] = None
        state["interrupt_at"] = req.get("interrupt_at")
        executor = state["executor"]
        t0 = time.monotonic()
        executor.execute(prompt, req["prompt_id"], {"client_id": "nada-test"}, valid[2])
        t1 = time.monotonic()
        state["interrupt_at"] = None
        messages = [(event, data) for event, data in executor.status_messages]
        return {"valid": True, "success": executor.success, "seconds": t1 - t0,
                "messages": messages, "history": executor.history_result, "progress": state["progress"],
                "interrupt_to_end": None if state["interrupted_at"] is None else t1 - state["interrupted_at"],
                **_summarise_events(server.events)}
    raise ValueError(f"unknown command {cmd!r}")


def worker_main(base: str) -> int:
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout = sys.stderr  # stray prints must not corrupt the protocol
    try:
        boot = _boot(Path(base))
    except BaseException as err:  # noqa: BLE001 - report any boot failure to the test
        import traceback

        traceback.print_exc()
        _reply(out, {"ok": False, "error": f"{type(err).__name__}: {err}"})
        return 1
    state = boot.pop("state")
    _reply(out, boot)
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        try:
            _reply(out, {"ok": True, **_handle(state, req)})
        except BaseException as err:  # noqa: BLE001 - the test shows the message
            import traceback

            traceback.print_exc()
            _reply(out, {"ok": False, "error": f"{type(err).__name__}: {err}"})
    return 0


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--worker":
    sys.exit(worker_main(sys.argv[2]))
