"""Variants of one workflow: ``--set``, ``--sweep`` and ``--table`` expanded into typed overrides.

An override targets ``NODE.INPUT`` where NODE is a node id (``"3"``), a unique node title
(``_meta.title``) or, failing both, a class type used by exactly one node. Values given as text
are typed by the input's current value in the workflow: an ``int`` input takes ``"64"`` (and, in
sweeps, ranges ``"0-7"``), a ``float`` input ``"0.5"``, a ``bool`` input ``true/false``, a string
input the text as-is. Links (``["4", 0]``) cannot be replaced by a value.

Expansion: every ``--set`` applies to all variants; several ``--sweep`` form their product (the
first one varies slowest); each ``--table`` row is one variant, combined with the sweeps.
"""

from __future__ import annotations

import copy
import csv
import itertools
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from nada_core.errors import InputError
from nada_core.json_text import parse_json
from .workflow_io import Workflow, is_link, node_title

MAX_VARIANTS = 100_000
_INT_RANGE = re.compile(r"^\s*(\d+)\s*(?:-|\.\.)\s*(\d+)\s*$")
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


@dataclass
class Variant:
    """One job: the base workflow plus ``overrides`` (``"<node id>.<input>"`` -> typed value)."""

    index: int
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Canonical text of the overrides; equal overrides give equal keys (used by ``--resume``)."""
        return overrides_key(self.overrides)

    def label(self, width: int = 3) -> str:
        return f"v{self.index:0{width}d}"

    def apply(self, workflow: Workflow) -> Workflow:
        """A deep copy of ``workflow`` with this variant's overrides written into the node inputs."""
        out = copy.deepcopy(workflow)
        for target, value in self.overrides.items():
            node_id, name = split_key(target)
            out[node_id].setdefault("inputs", {})[name] = copy.deepcopy(value)
        return out

    def describe(self) -> str:
        if not self.overrides:
            return "(workflow as saved)"
        return " ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in self.overrides.items())


def overrides_key(overrides: dict[str, Any]) -> str:
    return json.dumps(overrides, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def split_key(target: str) -> tuple[str, str]:
    """``"3.width"`` -> ``("3", "width")`` (node ids never contain dots in our keys' first part)."""
    node_id, _, name = target.partition(".")
    return node_id, name


# ----------------------------------------------------------------------------- resolution

def resolve_node(workflow: Workflow, name: str, where: str = "") -> str:
    """Node id for ``name``: an id, else a unique ``_meta.title``, else a unique class type."""
    prefix = f"{where}: " if where else ""
    if name in workflow:
        return name
    by_title = [nid for nid, node in workflow.items() if node_title(node) == name]
    if len(by_title) == 1:
        return by_title[0]
    if len(by_title) > 1:
        listed = ", ".join(by_title)
        raise InputError(f"{prefix}title {name!r} is used by several nodes ({listed}); use the node id instead, "
                         f"or give the nodes distinct titles in ComfyUI")
    by_class = [nid for nid, node in workflow.items() if node.get("class_type") == name]
    if len(by_class) == 1:
        return by_class[0]
    if len(by_class) > 1:
        listed = ", ".join(f"{nid} {node_title(workflow[nid])!r}" if node_title(workflow[nid]) else nid
                           for nid in by_class)
        raise InputError(f"{prefix}{name!r} matches several {name} nodes: {listed}; use a node id or a unique title")
    raise InputError(f"{prefix}no node {name!r} in the workflow; nodes are: {describe_nodes(workflow)}")


def describe_nodes(workflow: Workflow, limit: int = 40) -> str:
    """``"3 'Seed' (EmptyImage), 9 (SaveImage)"`` for error messages."""
    parts = []
    for nid, node in list(workflow.items())[:limit]:
        title = node_title(node)
        cls = node.get("class_type", "?")
        parts.append(f"{nid} {title!r} ({cls})" if title and title != cls else f"{nid} ({cls})")
    more = len(workflow) - limit
    return ", ".join(parts) + (f", ... ({more} more)" if more > 0 else "")


def resolve_target(workflow: Workflow, target: str, where: str = "") -> str:
    """``"Seed.value"`` -> canonical key ``"12.value"``; the input must exist and be a value, not a link."""
    prefix = f"{where}: " if where else ""
    if "." not in target:
        raise InputError(f"{prefix}{target!r} names no input; write NODE.INPUT, e.g. 3.seed or 'My Title.width'")
    node_name, name = target.rsplit(".", 1)
    if not node_name or not name:
        raise InputError(f"{prefix}{target!r} is not of the form NODE.INPUT")
    node_id = resolve_node(workflow, node_name, where)
    inputs = workflow[node_id].get("inputs", {})
    cls = workflow[node_id].get("class_type", "?")
    if name not in inputs:
        have = ", ".join(inputs) or "none"
        raise InputError(f"{prefix}node {node_id} ({cls}) has no input {name!r}; its inputs: {have}")
    if is_link(inputs[name]):
        src, out = inputs[name]
        raise InputError(f"{prefix}{node_id}.{name} is connected to node {src} output {out}, so it cannot be set to a "
                         f"value; override an input of node {src} instead, or turn the input into a widget in ComfyUI")
    return f"{node_id}.{name}"


# ----------------------------------------------------------------------------- typing

def _kind(existing: Any) -> str:
    if isinstance(existing, bool):
        return "bool"
    if isinstance(existing, int):
        return "int"
    if isinstance(existing, float):
        return "float"
    if isinstance(existing, str):
        return "str"
    if existing is None:
        return "any"
    return "json"


def coerce_text(text: str, existing: Any, where: str) -> Any:
    """Type the text ``text`` like ``existing`` (the workflow's current value of that input)."""
    kind = _kind(existing)
    s = text.strip()
    if kind == "bool":
        if s.lower() in _TRUE:
            return True
        if s.lower() in _FALSE:
            return False
        raise InputError(f"{where}: {text!r} is not a boolean; use true or false")
    if kind == "int":
        try:
            return int(s)
        except ValueError:
            pass
        try:
            f = float(s)
        except ValueError:
            raise InputError(f"{where}: {text!r} is not an integer (the workflow's value is {existing!r})") from None
        if f.is_integer():
            return int(f)
        raise InputError(f"{where}: {text!r} is not an integer (the workflow's value is {existing!r})")
    if kind == "float":
        try:
            value = float(s)
        except ValueError:
            raise InputError(f"{where}: {text!r} is not a number (the workflow's value is {existing!r})") from None
        if not math.isfinite(value):
            raise InputError(f"{where}: {text!r} is not a finite number")
        return value
    if kind == "str":
        return text
    try:  # None or a structured value: JSON, else plain text
        return parse_json(s, where)
    except InputError:
        if kind == "json":
            raise InputError(f"{where}: {text!r} is not valid JSON (the workflow's value is "
                             f"{json.dumps(existing)[:60]})") from None
        return text


def coerce_value(value: Any, existing: Any, where: str) -> Any:
    """Type an already decoded value (from JSONL/JSON lists) like ``existing``."""
    if isinstance(value, str):
        return coerce_text(value, existing, where)
    kind = _kind(existing)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise InputError(f"{where}: {value!r} is not a boolean; use true or false")
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"{where}: {value!r} is not an integer (the workflow's value is {existing!r})")
        if isinstance(value, float):
            if not value.is_integer():
                raise InputError(f"{where}: {value!r} is not an integer (the workflow's value is {existing!r})")
            return int(value)
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"{where}: {value!r} is not a number (the workflow's value is {existing!r})")
        return float(value)
    if kind == "str":
        if isinstance(value, (dict, list)):
            raise InputError(f"{where}: expected text, got {json.dumps(value)[:60]}")
        return value if isinstance(value, str) else json.dumps(value)
    return value


def existing_value(workflow: Workflow, key: str) -> Any:
    node_id, name = split_key(key)
    return workflow[node_id]["inputs"][name]


def parse_assignment(text: str, option: str) -> tuple[str, str]:
    """``"NODE.INPUT=VALUE"`` -> ``("NODE.INPUT", "VALUE")``."""
    target, eq, value = text.partition("=")
    if not eq or not target.strip():
        raise InputError(f"{option} {text!r}: write NODE.INPUT=VALUE, e.g. {option} 3.seed=42")
    return target.strip(), value


def parse_sweep_values(text: str, existing: Any, where: str) -> list[Any]:
    """``"1,2,3"``, int ranges ``"0-7"`` / ``"0..7"``, or a JSON list ``'["a, b", "c"]'`` (for commas in text)."""
    s = text.strip()
    if s.startswith("["):
        items = parse_json(s, f"{where}: {text!r} starts with '[' but", "write a JSON list of values", expect=list)
        values = [coerce_value(v, existing, where) for v in items]
    else:
        values = []
        for part in s.split(","):
            if not part.strip():
                continue
            m = _INT_RANGE.match(part)
            if _kind(existing) == "int" and m:
                a, b = int(m.group(1)), int(m.group(2))
                if b < a:
                    raise InputError(f"{where}: range {part.strip()!r} runs backwards; write {b}-{a}")
                if b - a >= MAX_VARIANTS:
                    raise InputError(f"{where}: range {part.strip()!r} is too long (at most {MAX_VARIANTS} values)")
                values.extend(range(a, b + 1))
            else:
                values.append(coerce_text(part.strip(), existing, where))
    if not values:
        raise InputError(f"{where}: no values given; write NODE.INPUT=v1,v2,...")
    return values


# ----------------------------------------------------------------------------- tables

def load_table(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a ``.csv`` (header NODE.INPUT,...; an empty cell keeps the workflow's value),
    ``.jsonl`` (one object per line) or ``.json`` (a list of objects). Columns starting with ``#``
    are notes and ignored."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"table {str(p)!r} not found")
    suffix = p.suffix.lower()
    rows: list[dict[str, Any]] = []
    try:
        if suffix == ".csv":
            with open(p, newline="", encoding="utf-8-sig") as fh:
                reader = csv.DictReader(fh)
                if not reader.fieldnames:
                    raise InputError(f"table {p.name} has no header row; the first row names the inputs (NODE.INPUT)")
                for line_no, row in enumerate(reader, start=2):
                    if None in row:
                        raise InputError(f"table {p.name} line {line_no} has more cells than the header")
                    rows.append({k.strip(): v for k, v in row.items()
                                 if k and not k.strip().startswith("#") and v is not None and v != ""})
        elif suffix in (".jsonl", ".ndjson"):
            for line_no, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
                if not line.strip():
                    continue
                obj = parse_json(line, f"table {p.name} line {line_no}", "write one object of NODE.INPUT: value "
                                 "per line")
                if not isinstance(obj, dict):
                    raise InputError(f"table {p.name} line {line_no} is not an object of NODE.INPUT: value")
                rows.append({k: v for k, v in obj.items() if not k.startswith("#")})
        elif suffix == ".json":
            data = parse_json(p.read_bytes(), f"table {p.name}", "write a JSON list of objects (NODE.INPUT: value)",
                              expect=list)
            if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
                raise InputError(f"table {p.name} must hold a JSON list of objects (NODE.INPUT: value)")
            rows = [{k: v for k, v in r.items() if not k.startswith("#")} for r in data]
        else:
            raise InputError(f"table {p.name}: unknown type {suffix!r}; use .csv, .jsonl or .json")
    except UnicodeDecodeError:
        raise InputError(f"table {p.name} is not UTF-8 text") from None
    if not rows:
        raise InputError(f"table {p.name} has no rows")
    return rows


# ----------------------------------------------------------------------------- expansion

def expand_variants(workflow: Workflow, sets: Sequence[str] = (), sweeps: Sequence[str] = (),
                    table_rows: Iterable[dict[str, Any]] | None = None, table_name: str = "table") -> list[Variant]:
    """All variants, numbered from 0: (table rows) x (product of sweeps), each with every ``--set``."""
    claimed: dict[str, str] = {}  # key -> the option that set it, to refuse contradictions

    def claim(key: str, where: str) -> None:
        if key in claimed:
            raise InputError(f"{where}: {key} is already given by {claimed[key]}; give each input once")
        claimed[key] = where

    fixed: dict[str, Any] = {}
    for text in sets:
        target, value = parse_assignment(text, "--set")
        where = f"--set {target}"
        key = resolve_target(workflow, target, where)
        claim(key, where)
        fixed[key] = coerce_text(value, existing_value(workflow, key), where)

    axes: list[tuple[str, list[Any]]] = []
    for text in sweeps:
        target, value = parse_assignment(text, "--sweep")
        where = f"--sweep {target}"
        key = resolve_target(workflow, target, where)
        claim(key, where)
        axes.append((key, parse_sweep_values(value, existing_value(workflow, key), where)))

    rows: list[dict[str, Any]] = [{}]
    if table_rows is not None:
        rows = []
        resolved_cols: dict[str, str] = {}
        for row_no, row in enumerate(table_rows, start=1):
            typed: dict[str, Any] = {}
            for col, value in row.items():
                where = f"{table_name} row {row_no}, column {col}"
                if col not in resolved_cols:
                    resolved_cols[col] = resolve_target(workflow, col, f"{table_name} column {col}")
                    claim(resolved_cols[col], f"{table_name} column {col}")
                key = resolved_cols[col]
                typed[key] = coerce_value(value, existing_value(workflow, key), where)
            rows.append(typed)

    total = len(rows)
    for _, values in axes:
        total *= len(values)
    if total > MAX_VARIANTS:
        raise InputError(f"{total} variants is more than {MAX_VARIANTS}; split the batch into smaller runs")

    variants: list[Variant] = []
    for row in rows:
        for combo in itertools.product(*(values for _, values in axes)):
            overrides = dict(fixed)
            overrides.update(row)
            overrides.update({key: value for (key, _), value in zip(axes, combo)})
            variants.append(Variant(index=len(variants), overrides=overrides))
    return variants
