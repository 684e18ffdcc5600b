"""Where a shipped workflow's nodes sit on ComfyUI's canvas, for a 1600x1000 window with the minimap open.

ComfyUI's front end (v0.8) restores the view saved in a workflow (``extra.ds``: ``scale`` and
``offset``; a point ``g`` of the graph is drawn at ``(g + offset) * scale`` on screen). Around the
canvas it draws, in a 1600x1000 window: the tab bar (top, 37 px), the side bar (left, 58 px), the
floating workflow-name box (top left, below the tab bar, up to y = 90) and the Run bar (top right,
same height), and in the bottom right corner the minimap (about 253x200) above the zoom buttons.
:data:`VIEW_BOX` is the screen area left for nodes and :data:`MINIMAP_CORNER` the corner the
minimap and its buttons cover; :func:`fit_view` picks the largest zoom at which every node box
stays inside the one and out of the other. tests/test_frontend.py measures the real boxes in
Chromium, after loading and after a run (nodes with previews grow).

A node's box: its ``pos`` is the top left of its body; the title bar (:data:`TITLE_HEIGHT`) sits
above it.
"""

from __future__ import annotations

from typing import Iterable

TITLE_HEIGHT = 30  # LiteGraph.NODE_TITLE_HEIGHT
WINDOW = (1600, 1000)
# Screen area for nodes: right of the side bar, below the tab bar, the workflow-name box, the Run
# bar and the "job completed" notice under it, above the bottom edge. (x0, y0, x1, y1)
VIEW_BOX = (75, 135, 1590, 990)
# The minimap (open by default) and the zoom buttons under it cover everything right of and below this point.
MINIMAP_CORNER = (1330, 730)
SCALES = tuple(round(1.0 - 0.05 * i, 2) for i in range(11))  # 1.0 ... 0.5

Box = tuple[float, float, float, float]  # x, y, width, height (graph units, title included)


def node_box(pos: Iterable[float], size: Iterable[float]) -> Box:
    """The box a node covers: ``pos``/``size`` of its body plus the title bar above."""
    (x, y), (w, h) = tuple(pos), tuple(size)
    return (float(x), float(y) - TITLE_HEIGHT, float(w), float(h) + TITLE_HEIGHT)


def on_screen(box: Box, view: dict) -> Box:
    """``box`` in screen pixels under ``view`` (``{"scale", "offset"}``)."""
    s, (ox, oy) = view["scale"], view["offset"]
    x, y, w, h = box
    return ((x + ox) * s, (y + oy) * s, w * s, h * s)


def overlaps(a: Box, b: Box, gap: float = 0.0) -> bool:
    """Do boxes ``a`` and ``b`` (x, y, w, h) overlap (closer than ``gap``)?"""
    return (a[0] < b[0] + b[2] + gap and b[0] < a[0] + a[2] + gap
            and a[1] < b[1] + b[3] + gap and b[1] < a[1] + a[3] + gap)


def screen_problem(box: Box) -> str | None:
    """Why a screen box is not fully visible in the 1600x1000 window, or ``None``."""
    x, y, w, h = box
    x0, y0, x1, y1 = VIEW_BOX
    e = 0.5  # px: offsets are rounded to 0.1 graph units
    if x < x0 - e or y < y0 - e or x + w > x1 + e or y + h > y1 + e:
        return f"outside the visible area {VIEW_BOX}"
    mx, my = MINIMAP_CORNER
    if x + w > mx and y + h > my:
        return "under the minimap"
    return None


def fit_view(boxes: list[Box]) -> dict:
    """The largest zoom of :data:`SCALES` (and its offset) at which every box is visible; the top
    left box corner goes to the top left of :data:`VIEW_BOX`. Falls back to the smallest zoom."""
    left = min(b[0] for b in boxes)
    top = min(b[1] for b in boxes)
    for scale in SCALES:
        view = {"scale": scale, "offset": [round(VIEW_BOX[0] / scale - left, 1), round(VIEW_BOX[1] / scale - top, 1)]}
        if all(screen_problem(on_screen(b, view)) is None for b in boxes):
            return view
    return view


def layout_problems(named_boxes: dict[str, Box], view: dict, gap: float = 10.0) -> list[str]:
    """Everything wrong with a layout: boxes overlapping (closer than ``gap`` graph units) or not visible."""
    problems = []
    items = list(named_boxes.items())
    for i, (name, box) in enumerate(items):
        why = screen_problem(on_screen(box, view))
        if why:
            problems.append(f"{name} is {why}")
        for other, obox in items[i + 1:]:
            if overlaps(box, obox, gap):
                problems.append(f"{name} overlaps {other}")
    return problems
