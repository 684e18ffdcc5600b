"""CLI sub-commands; see :mod:`nada_core.cli` for the module protocol."""
