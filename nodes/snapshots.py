"""Training snapshots of NADA Train: the adapted generator every N steps, and once more on Cancel.

ComfyUI throws a cancelled node's work away, so without snapshots a Cancel after an hour of
training keeps nothing. Snapshots go where saved generators go (:func:`paths.generator_save_dir`),
one folder per run::

    <first stylegan folder>/nada/snapshots/<target>_<YYYYmmdd-HHMMSS>/step_000100.safetensors

so NADA Load Generator lists them (``nada/snapshots/...``). A compact run (adapt ``domain`` /
``stylespace``) snapshots its domain instead, a few kB, where domains are saved
(:func:`paths.domain_save_dir`), so NADA Load Domain lists them::

    <domains folder>/snapshots/<target>_<YYYYmmdd-HHMMSS>/step_000100.safetensors
    <domains folder>/snapshots/<first target>_and_2_more_<...>/step_000100_<target>.safetensors  (several targets)

Each file is written atomically by the trainer's own ``save_generator`` / ``save_domain`` and
carries the training settings, the direction and the number of steps done in its metadata. The
folder name comes from the target text, reduced to letters, digits and ``_``, and is joined with
:func:`paths.safe_join`, so it cannot leave the save folder.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from . import paths

SNAPSHOT_SUBFOLDER = "snapshots"
_SLUG_MAX = 40


def snapshot_tooltip() -> str:
    """The tooltip of NADA Train's ``snapshot_every`` input, naming the folder snapshots go to now."""
    return ("Save the adapted generator every N steps (0 = off), and once more when you Cancel, so a stopped run "
            f"keeps what it trained. Files go to {SNAPSHOT_SUBFOLDER}/<target>_<date-time>/step_NNNNNN.safetensors "
            f"inside {paths.save_dir_tooltip()}, with the training settings inside; NADA Load Generator lists "
            f"them as nada/{SNAPSHOT_SUBFOLDER}/.... With adapt domain or stylespace the domain (a few kB) is saved "
            f"instead, under {SNAPSHOT_SUBFOLDER}/ in the domains folder (one file per target), listed by NADA Load "
            "Domain.")


def run_label(direction) -> str:
    """A short file-name-safe label of a direction: its target text, ``images`` for an image direction,
    ``<first target>_and_<N>_more`` for several targets."""
    from nada_core.guidance.directions import DirectionSet

    more = ""
    if isinstance(direction, DirectionSet):
        more = f"_and_{len(direction) - 1}_more"
        direction = direction[0]
    text = getattr(direction, "target_text", None) if getattr(direction, "kind", "text") == "text" else None
    slug = re.sub(r"[^A-Za-z0-9]+", "_", text or "images").strip("_")[:_SLUG_MAX].strip("_")
    return (slug or "run") + more


class Snapshots:
    """Writes a run's snapshots; the run folder is made on the first write (no empty folders)."""

    def __init__(self, trainer, every: int, label: str) -> None:
        self.trainer = trainer
        self.every = int(every)
        self.label = label
        self.folder: Path | None = None
        self.written: list[Path] = []

    @property
    def compact(self) -> bool:
        return getattr(self.trainer, "adapter", None) is not None

    def _root(self) -> Path:
        """Generators: the first stylegan folder's ``nada/``; domains: the domains folder."""
        return paths.domain_save_dir() if self.compact else paths.generator_save_dir()

    def _run_folder(self) -> Path:
        if self.folder is None:
            root = self._root()
            stamp = time.strftime("%Y%m%d-%H%M%S")
            name, n = f"{self.label}_{stamp}", 1
            while paths.safe_join(root, f"{SNAPSHOT_SUBFOLDER}/{name}").exists():  # two runs in one second
                n += 1
                name = f"{self.label}_{stamp}_{n}"
            self.folder = paths.safe_join(root, f"{SNAPSHOT_SUBFOLDER}/{name}")
        return self.folder

    def save(self) -> Path:
        """Save the trainer's generator as it is now, as ``step_<steps done>.safetensors``."""
        from nada_core.atomic import check_output

        step = self.trainer.step_index
        extra = {"snapshot": {"step": step, "of": self.trainer.config.steps}}
        if not self.compact:
            target = self._run_folder() / f"step_{step:06d}.safetensors"
            check_output(target, suffixes=(".safetensors",), what="snapshot")
            target.parent.mkdir(parents=True, exist_ok=True)
            self.trainer.save_generator(target, extra_metadata=extra)
            self.written.append(target)
            return target
        names = getattr(self.trainer, "target_names", None)
        suffixes = [f"_{n}" for n in names()] if callable(names) else [""]  # several targets: one file each
        first = None
        for t, suffix in enumerate(suffixes):
            target = self._run_folder() / f"step_{step:06d}{suffix}.safetensors"
            check_output(target, suffixes=(".safetensors",), what="snapshot")
            target.parent.mkdir(parents=True, exist_ok=True)
            self.trainer.save_domain(target, extra_metadata=extra, target=t)
            first = first or target
        self.written.append(first)
        return first

    def after_step(self, step: int) -> None:
        """Called after each step: saves on every ``every``-th one."""
        if self.every and step % self.every == 0:
            self.save()

    def on_cancel(self) -> Path | None:
        """On Cancel: keep the weights trained so far (when snapshots are on and a step was done)."""
        if not self.every or self.trainer.step_index == 0:
            return None
        if self.written and self.written[-1].name.startswith(f"step_{self.trainer.step_index:06d}"):
            return self.written[-1]
        return self.save()

    def listed_name(self, path: Path) -> str:
        """``path`` as NADA Load Generator (relative to the first stylegan folder) or NADA Load Domain
        (relative to the domains folder) lists it."""
        root = paths.domain_save_dir() if self.compact else paths.model_folders(paths.STYLEGAN)[0]
        return path.relative_to(root).as_posix()
