"""A small line-chart writer for the bench's latency-against-load plot: RGB canvas, lines,
markers and a 5x7 pixel font, encoded as PNG with zlib and struct only.

Why not matplotlib: one chart does not justify ~10 pinned packages (numpy, pillow, fonttools,
kiwisolver, ...) in the lock and an extra install step before `make bench`; without them the
plot is drawn by the smoke run in `make test` too, so it cannot rot unnoticed.
"""

from __future__ import annotations

import itertools
import math
import struct
import zlib
from collections.abc import Sequence

Color = tuple[int, int, int]
Point = tuple[float, float]

WHITE: Color = (255, 255, 255)
BLACK: Color = (30, 30, 30)
GREY: Color = (150, 150, 150)
GRID: Color = (225, 225, 225)
BLUE: Color = (31, 119, 180)
RED: Color = (214, 39, 40)

# 5x7 glyphs, one string of 7 rows of 5 columns each ("#" = ink); text is drawn upper-case.
_GLYPHS = """
A .###. #...# #...# ##### #...# #...# #...#
B ####. #...# #...# ####. #...# #...# ####.
C .###. #...# #.... #.... #.... #...# .###.
D ####. #...# #...# #...# #...# #...# ####.
E ##### #.... #.... ####. #.... #.... #####
F ##### #.... #.... ####. #.... #.... #....
G .###. #...# #.... #.### #...# #...# .####
H #...# #...# #...# ##### #...# #...# #...#
I .###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.
J ..### ...#. ...#. ...#. ...#. #..#. .##..
K #...# #..#. #.#.. ##... #.#.. #..#. #...#
L #.... #.... #.... #.... #.... #.... #####
M #...# ##.## #.#.# #.#.# #...# #...# #...#
N #...# #...# ##..# #.#.# #..## #...# #...#
O .###. #...# #...# #...# #...# #...# .###.
P ####. #...# #...# ####. #.... #.... #....
Q .###. #...# #...# #...# #.#.# #..#. .##.#
R ####. #...# #...# ####. #.#.. #..#. #...#
S .#### #.... #.... .###. ....# ....# ####.
T ##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..
U #...# #...# #...# #...# #...# #...# .###.
V #...# #...# #...# #...# #...# .#.#. ..#..
W #...# #...# #...# #.#.# #.#.# #.#.# .#.#.
X #...# #...# .#.#. ..#.. .#.#. #...# #...#
Y #...# #...# .#.#. ..#.. ..#.. ..#.. ..#..
Z ##### ....# ...#. ..#.. .#... #.... #####
0 .###. #...# #..## #.#.# ##..# #...# .###.
1 ..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.
2 .###. #...# ....# ...#. ..#.. .#... #####
3 ##### ...#. ..#.. ...#. ....# #...# .###.
4 ...#. ..##. .#.#. #..#. ##### ...#. ...#.
5 ##### #.... ####. ....# ....# #...# .###.
6 ..##. .#... #.... ####. #...# #...# .###.
7 ##### ....# ...#. ..#.. .#... .#... .#...
8 .###. #...# #...# .###. #...# #...# .###.
9 .###. #...# #...# .#### ....# ...#. .##..
. ..... ..... ..... ..... ..... .##.. .##..
, ..... ..... ..... ..... .##.. ..#.. .#...
% ##... ##..# ...#. ..#.. .#... #..## ...##
( ...#. ..#.. .#... .#... .#... ..#.. ...#.
) .#... ..#.. ...#. ...#. ...#. ..#.. .#...
/ ..... ....# ...#. ..#.. .#... #.... .....
- ..... ..... ..... ##### ..... ..... .....
: ..... .##.. .##.. ..... .##.. .##.. .....
= ..... ..... ##### ..... ##### ..... .....
+ ..... ..#.. ..#.. ##### ..#.. ..#.. .....
"""
FONT: dict[str, list[str]] = {
    line[0]: line[2:].split() for line in _GLYPHS.strip().splitlines() if line.strip()
}
FONT[" "] = ["....."] * 7


class Canvas:
    def __init__(self, width: int, height: int, background: Color = WHITE) -> None:
        self.width = width
        self.height = height
        self.pixels = bytearray(bytes(background) * (width * height))

    def dot(self, x: int, y: int, color: Color, size: int = 1) -> None:
        half = size // 2
        for yy in range(y - half, y - half + size):
            if 0 <= yy < self.height:
                for xx in range(x - half, x - half + size):
                    if 0 <= xx < self.width:
                        i = (yy * self.width + xx) * 3
                        self.pixels[i : i + 3] = bytes(color)

    def line(
        self, x0: int, y0: int, x1: int, y1: int, color: Color, width: int = 1, dash: int = 0
    ) -> None:
        """Bresenham, `width` pixels thick; `dash` > 0 draws that many on, that many off."""
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err, step = dx + dy, 0
        while True:
            if not dash or (step // dash) % 2 == 0:
                self.dot(x0, y0, color, width)
            step += 1
            if x0 == x1 and y0 == y1:
                return
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def text(self, x: int, y: int, text: str, color: Color = BLACK, scale: int = 2) -> None:
        """`text` with its top-left corner at (x, y); 6 * scale pixels per character."""
        for n, char in enumerate(text.upper()):
            rows = FONT.get(char, FONT[" "])
            for row, bits in enumerate(rows):
                for col, bit in enumerate(bits):
                    if bit == "#":
                        for yy in range(scale):
                            for xx in range(scale):
                                px = x + (n * 6 + col) * scale + xx
                                self.dot(px, y + row * scale + yy, color)

    def png(self) -> bytes:
        stride = self.width * 3
        raw = b"".join(
            b"\x00" + bytes(self.pixels[y * stride : (y + 1) * stride]) for y in range(self.height)
        )

        def chunk(tag: bytes, data: bytes) -> bytes:
            crc = zlib.crc32(tag + data) & 0xFFFFFFFF
            return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b"")
        )


def text_width(text: str, scale: int = 2) -> int:
    return len(text) * 6 * scale


def nice_step(span: float, ticks: int = 5) -> float:
    """1, 2 or 5 times a power of ten, about span / ticks."""
    raw = span / max(1, ticks)
    power = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    for factor in (1, 2, 5, 10):
        if raw <= factor * power:
            return float(factor * power)
    return float(10 * power)


def log_ticks(low: float, high: float) -> list[float]:
    """1-2-5 values of each decade between low and high."""
    out: list[float] = []
    for decade in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1):
        for factor in (1, 2, 5):
            value = factor * 10.0**decade
            if low <= value <= high:
                out.append(value)
    return out


def _label(value: float) -> str:
    return f"{value:g}" if value < 10_000 else f"{value / 1000:g}K"


class Series:
    def __init__(self, label: str, color: Color, points: Sequence[Point]) -> None:
        self.label = label
        self.color = color
        self.points = sorted(points)


def panel(
    canvas: Canvas,
    box: tuple[int, int, int, int],
    title: str,
    series: Sequence[Series],
    *,
    x_label: str,
    y_label: str,
    marker_x: float | None = None,
    marker_label: str = "",
) -> None:
    """One chart in `box` (left, top, right, bottom): linear x from 0, logarithmic y."""
    left, top, right, bottom = box
    x0, y0, x1, y1 = left + 90, top + 50, right - 20, bottom - 60
    xs = [x for s in series for x, _ in s.points] + ([marker_x] if marker_x else [])
    ys = [y for s in series for _, y in s.points if y > 0]
    x_max = max(xs, default=1.0) * 1.05 or 1.0
    y_low = min(ys, default=1.0) / 1.5
    y_high = max(ys, default=10.0) * 1.5
    if y_high / y_low < 10:
        y_low, y_high = y_low / 2, y_high * 2

    def px(x: float) -> int:
        return round(x0 + (x1 - x0) * x / x_max)

    def py(y: float) -> int:
        frac = (math.log10(max(y, y_low)) - math.log10(y_low)) / (
            math.log10(y_high) - math.log10(y_low)
        )
        return round(y1 - (y1 - y0) * frac)

    canvas.text(left + (right - left - text_width(title)) // 2, top + 8, title)
    step = nice_step(x_max)
    tick = 0.0
    while tick <= x_max:
        canvas.line(px(tick), y0, px(tick), y1, GRID)
        canvas.line(px(tick), y1, px(tick), y1 + 5, BLACK)
        label = _label(tick)
        canvas.text(px(tick) - text_width(label) // 2, y1 + 10, label)
        tick += step
    for value in log_ticks(y_low, y_high):
        canvas.line(x0, py(value), x1, py(value), GRID)
        canvas.line(x0 - 5, py(value), x0, py(value), BLACK)
        label = _label(value)
        canvas.text(x0 - 10 - text_width(label), py(value) - 7, label)
    canvas.line(x0, y0, x0, y1, BLACK, 2)
    canvas.line(x0, y1, x1, y1, BLACK, 2)
    canvas.text((x0 + x1) // 2 - text_width(x_label) // 2, y1 + 34, x_label)
    canvas.text(left + 8, y0 - 22, y_label)
    if marker_x:
        canvas.line(px(marker_x), y0, px(marker_x), y1, GREY, 1, dash=6)
        at = px(marker_x) + 6
        if at + text_width(marker_label) > x1:
            at = px(marker_x) - 6 - text_width(marker_label)
        canvas.text(at, y0 + 4, marker_label, GREY)
    for n, s in enumerate(series):
        points = [(px(x), py(y)) for x, y in s.points]
        for (ax, ay), (bx, by) in itertools.pairwise(points):
            canvas.line(ax, ay, bx, by, s.color, 2)
        for x, y in points:
            canvas.dot(x, y, s.color, 7)
        canvas.line(x0 + 14, y0 + 16 + n * 22, x0 + 44, y0 + 16 + n * 22, s.color, 3)
        canvas.text(x0 + 52, y0 + 9 + n * 22, s.label, s.color)


def latency_vs_load(sweeps: dict[str, dict[str, float | list[dict[str, float]]]]) -> bytes:
    """One panel per scenario: p50 and p99 latency (log ms) against offered req/s, with the
    closed-loop maximum marked. `sweeps[name] = {"max_rps": .., "levels": [{offered_rps,
    p50_ms, p99_ms}, ...]}`."""
    width, height = 640, 480
    canvas = Canvas(width * max(1, len(sweeps)), height)
    for n, (name, sweep) in enumerate(sweeps.items()):
        levels = sweep["levels"]
        assert isinstance(levels, list)
        max_rps = sweep["max_rps"]
        assert isinstance(max_rps, float | int)
        panel(
            canvas,
            (n * width, 0, (n + 1) * width, height),
            f"{name}: p50/p99 latency vs offered load",
            [
                Series("p50", BLUE, [(lv["offered_rps"], lv["p50_ms"]) for lv in levels]),
                Series("p99", RED, [(lv["offered_rps"], lv["p99_ms"]) for lv in levels]),
            ],
            x_label="offered load, req/s",
            y_label="latency, ms",
            marker_x=float(max_rps),
            marker_label="max",
        )
    return canvas.png()
