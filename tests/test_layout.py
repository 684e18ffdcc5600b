"""The package layout: old flat module names alias their new homes (one module object each)."""

import importlib
import subprocess
import sys

import pytest

import nada_core

OLD_TO_NEW = sorted(nada_core._MOVED.items())


@pytest.mark.parametrize("old, new", OLD_TO_NEW)
def test_old_module_name_is_the_new_module(old, new):
    assert importlib.import_module(f"nada_core.{old}") is importlib.import_module(new)


def test_alias_of_a_submodule_and_public_names():
    import nada_core.guidance.clip.hub as hub
    import nada_core.clip.hub as old_hub
    from nada_core.models.stylegan2 import Generator

    assert old_hub is hub
    assert nada_core.Generator is Generator
    with pytest.raises(AttributeError):
        nada_core.no_such_name  # noqa: B018


def test_old_name_imported_first_gives_one_module():
    # In a fresh interpreter, importing the old name before the new one must not load a second copy.
    code = ("import nada_core.trainer as a, nada_core.training.trainer as b, sys;"
            "assert a is b; assert len({id(m) for m in sys.modules.values() if (getattr(m, '__file__', None) or '')"
            ".endswith('training/trainer.py')}) == 1; print('one')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "one"


def test_import_nada_core_stays_light():
    code = "import nada_core, sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
