"""Collapsed stacks (`frame;frame;... COUNT` a line, as py-spy --format raw and
flamegraph.pl's stackcollapse write them): the functions with the most samples of
their own, and a flame graph of them as a standalone SVG (the root at the bottom, each
frame as wide as its samples, callees above their caller, siblings in name order as
flamegraph.pl draws them; hover a frame for its name and samples)."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html import escape

Stack = tuple[tuple[str, ...], int]

# py-spy's frame: "name (file:line)", the line left out where it has none.
_FRAME = re.compile(r"^(?P<name>.*) \((?P<file>.*?)(?::\d+)?\)$")

WIDTH = 1200
ROW = 16
FONT = 11
# A frame narrower than this many pixels is not drawn (it would be a hairline).
MIN_WIDTH = 0.3


def parse(text: str) -> list[Stack]:
    """Each line's frames (outermost first) and sample count; malformed lines skipped."""
    stacks = []
    for line in text.splitlines():
        frames, _, count = line.rstrip().rpartition(" ")
        if frames and count.isdigit():
            stacks.append((tuple(frames.split(";")), int(count)))
    return stacks


def function(frame: str) -> str:
    """A frame without its line number: "name (file)", so the samples of every line of
    a function add up."""
    m = _FRAME.match(frame)
    return f"{m['name']} ({m['file']})" if m else frame


def own(stacks: Iterable[Stack], top: int) -> list[tuple[str, int]]:
    """The `top` functions by samples of their own (the innermost frame of a stack)."""
    counts: Counter[str] = Counter()
    for frames, n in stacks:
        if frames:
            counts[function(frames[-1])] += n
    return counts.most_common(top)


@dataclass(slots=True)
class _Node:
    samples: int = 0
    children: dict[str, _Node] = field(default_factory=dict)


def _tree(stacks: Iterable[Stack]) -> _Node:
    root = _Node()
    for frames, n in stacks:
        root.samples += n
        node = root
        for frame in frames:
            node = node.children.setdefault(frame, _Node())
            node.samples += n
    return root


def _colour(name: str) -> str:
    """flamegraph.pl's "hot" palette, picked by the name so a function keeps its colour."""
    h = hashlib.md5(name.encode(), usedforsecurity=False).digest()
    return f"rgb({205 + h[0] % 50},{h[1] % 230},{h[2] % 55})"


def svg(stacks: Sequence[Stack], title: str) -> str:
    """The flame graph of stacks as an SVG document."""
    root = _tree(stacks)
    depth = _depth(root)
    height = (depth + 3) * ROW
    scale = WIDTH / root.samples if root.samples else 0.0
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="monospace" font-size="{FONT}">',
        f'<rect width="{WIDTH}" height="{height}" fill="#f8f8f0"/>',
        f'<text x="{WIDTH / 2}" y="{ROW}" text-anchor="middle" font-size="{FONT + 3}">{escape(title)}</text>',
    ]

    def draw(name: str, node: _Node, x: float, level: int) -> None:
        w = node.samples * scale
        if w < MIN_WIDTH:
            return
        y = height - (level + 1) * ROW
        pct = 100 * node.samples / root.samples
        out.append(
            f"<g><title>{escape(name)} ({node.samples} samples, {pct:.2f}%)</title>"
            f'<rect x="{x:.2f}" y="{y}" width="{w:.2f}" height="{ROW - 1}" fill="{_colour(name)}"/>'
        )
        chars = int((w - 4) / (FONT * 0.6))
        if chars >= 3:
            label = name if len(name) <= chars else name[: chars - 2] + ".."
            out.append(f'<text x="{x + 2:.2f}" y="{y + ROW - 4}">{escape(label)}</text>')
        out.append("</g>")
        for child_name in sorted(node.children):
            child = node.children[child_name]
            draw(child_name, child, x, level + 1)
            x += child.samples * scale

    draw("all", root, 0.0, 0)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _depth(node: _Node) -> int:
    return 1 + max((_depth(c) for c in node.children.values()), default=0)
