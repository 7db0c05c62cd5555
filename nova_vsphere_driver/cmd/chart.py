"""Per-host load as terminal bars and as a PNG, with nothing beyond the standard library.

The PNG writer is a few lines over ``zlib`` (8-bit RGB, no filtering) and a
5x7 bitmap font for labels, so ``--plot`` needs no matplotlib.
"""

from __future__ import annotations

import dataclasses
import struct
import zlib
from collections.abc import Sequence

_EIGHTHS = " ▏▎▍▌▋▊▉"


def bar(fraction: float, width: int) -> str:
    """A horizontal bar ``fraction`` (0..1, clipped) of ``width`` cells, in eighths."""
    fraction = min(max(fraction, 0.0), 1.0)
    eighths = round(fraction * width * 8)
    full, rest = divmod(eighths, 8)
    text = "█" * full + (_EIGHTHS[rest] if rest else "")
    return text.ljust(width)


@dataclasses.dataclass(frozen=True)
class HostBar:
    """One host's row: DRS load before and after (None: not usable, e.g. maintenance)."""

    name: str
    before: float | None
    after: float | None


@dataclasses.dataclass(frozen=True)
class Panel:
    title: str
    hosts: tuple[HostBar, ...]


# -- PNG ---------------------------------------------------------------------------------

#: 5x7 glyphs, rows top to bottom.  Text is drawn upper-case.
_FONT_ROWS = {
    "A": "01110 10001 10001 11111 10001 10001 10001",
    "B": "11110 10001 10001 11110 10001 10001 11110",
    "C": "01110 10001 10000 10000 10000 10001 01110",
    "D": "11110 10001 10001 10001 10001 10001 11110",
    "E": "11111 10000 10000 11110 10000 10000 11111",
    "F": "11111 10000 10000 11110 10000 10000 10000",
    "G": "01110 10001 10000 10111 10001 10001 01111",
    "H": "10001 10001 10001 11111 10001 10001 10001",
    "I": "01110 00100 00100 00100 00100 00100 01110",
    "J": "00111 00010 00010 00010 00010 10010 01100",
    "K": "10001 10010 10100 11000 10100 10010 10001",
    "L": "10000 10000 10000 10000 10000 10000 11111",
    "M": "10001 11011 10101 10101 10001 10001 10001",
    "N": "10001 10001 11001 10101 10011 10001 10001",
    "O": "01110 10001 10001 10001 10001 10001 01110",
    "P": "11110 10001 10001 11110 10000 10000 10000",
    "Q": "01110 10001 10001 10001 10101 10010 01101",
    "R": "11110 10001 10001 11110 10100 10010 10001",
    "S": "01111 10000 10000 01110 00001 00001 11110",
    "T": "11111 00100 00100 00100 00100 00100 00100",
    "U": "10001 10001 10001 10001 10001 10001 01110",
    "V": "10001 10001 10001 10001 10001 01010 00100",
    "W": "10001 10001 10001 10101 10101 10101 01010",
    "X": "10001 10001 01010 00100 01010 10001 10001",
    "Y": "10001 10001 01010 00100 00100 00100 00100",
    "Z": "11111 00001 00010 00100 01000 10000 11111",
    "0": "01110 10001 10011 10101 11001 10001 01110",
    "1": "00100 01100 00100 00100 00100 00100 01110",
    "2": "01110 10001 00001 00010 00100 01000 11111",
    "3": "11111 00010 00100 00010 00001 10001 01110",
    "4": "00010 00110 01010 10010 11111 00010 00010",
    "5": "11111 10000 11110 00001 00001 10001 01110",
    "6": "00110 01000 10000 11110 10001 10001 01110",
    "7": "11111 00001 00010 00100 01000 01000 01000",
    "8": "01110 10001 10001 01110 10001 10001 01110",
    "9": "01110 10001 10001 01111 00001 00010 01100",
    " ": "00000 00000 00000 00000 00000 00000 00000",
    "-": "00000 00000 00000 11111 00000 00000 00000",
    ">": "01000 00100 00010 00001 00010 00100 01000",
    "<": "00010 00100 01000 10000 01000 00100 00010",
    ".": "00000 00000 00000 00000 00000 01100 01100",
    ",": "00000 00000 00000 00000 01100 00100 01000",
    ":": "00000 01100 01100 00000 01100 01100 00000",
    "(": "00010 00100 01000 01000 01000 00100 00010",
    ")": "01000 00100 00010 00010 00010 00100 01000",
    "%": "11000 11001 00010 00100 01000 10011 00011",
    "/": "00000 00001 00010 00100 01000 10000 00000",
    "_": "00000 00000 00000 00000 00000 00000 11111",
    "=": "00000 00000 11111 00000 11111 00000 00000",
    "+": "00000 00100 00100 11111 00100 00100 00000",
    "?": "01110 10001 00001 00010 00100 00000 00100",
}
FONT = {ch: tuple(int(row, 2) for row in rows.split()) for ch, rows in _FONT_ROWS.items()}
GLYPH_W, GLYPH_H = 5, 7

Color = tuple[int, int, int]
WHITE: Color = (255, 255, 255)
INK: Color = (40, 40, 40)
GRID: Color = (225, 225, 225)
BEFORE: Color = (170, 170, 170)
AFTER: Color = (31, 119, 180)
HATCH: Color = (214, 96, 77)


class Canvas:
    """An RGB raster with rectangles and 5x7 text; ``png()`` encodes it."""

    def __init__(self, width: int, height: int, background: Color = WHITE) -> None:
        if width <= 0 or height <= 0:
            raise ValueError("canvas size must be positive")
        self.width, self.height = width, height
        self.rows = [bytearray(bytes(background) * width) for _ in range(height)]

    def rect(self, x: int, y: int, w: int, h: int, color: Color) -> None:
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + w, self.width), min(y + h, self.height)
        if x0 >= x1 or y0 >= y1:
            return
        run = bytes(color) * (x1 - x0)
        for row in self.rows[y0:y1]:
            row[x0 * 3:x1 * 3] = run

    @staticmethod
    def text_width(text: str, scale: int = 1) -> int:
        return len(text) * (GLYPH_W + 1) * scale

    def text(self, x: int, y: int, text: str, color: Color = INK, scale: int = 1) -> int:
        """Draw ``text`` with its top-left at (x, y); returns the x after it."""
        for ch in text.upper():
            glyph = FONT.get(ch, FONT["?"])
            for gy, bits in enumerate(glyph):
                for gx in range(GLYPH_W):
                    if bits & (1 << (GLYPH_W - 1 - gx)):
                        self.rect(x + gx * scale, y + gy * scale, scale, scale, color)
            x += (GLYPH_W + 1) * scale
        return x

    def png(self) -> bytes:
        def chunk(kind: bytes, data: bytes) -> bytes:
            return (struct.pack(">I", len(data)) + kind + data
                    + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

        raw = b"".join(b"\x00" + bytes(row) for row in self.rows)  # filter 0 per row
        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def load_chart(panels: Sequence[Panel], title: str) -> Canvas:
    """Grouped horizontal bars per host: load before (grey) and after (blue) the pass."""
    scale, pad, label_w, bar_w, bar_h = 2, 16, 110, 420, 12
    line = GLYPH_H * scale + 8
    row_h = 2 * bar_h + 10
    height = pad + line + line + pad // 2  # title, legend
    for panel in panels:
        height += line + row_h * len(panel.hosts) + pad
    width = pad * 2 + label_w + bar_w + 170
    canvas = Canvas(width, height)
    y = pad
    canvas.text(pad, y, title, scale=scale)
    y += line
    x = canvas.text(pad, y, "load ", scale=scale)
    canvas.rect(x, y, 24, GLYPH_H * scale, BEFORE)
    x = canvas.text(x + 30, y, "before  ", scale=scale)
    canvas.rect(x, y, 24, GLYPH_H * scale, AFTER)
    x = canvas.text(x + 30, y, "after  ", scale=scale)
    canvas.rect(x, y, 24, GLYPH_H * scale, HATCH)
    canvas.text(x + 30, y, "not usable", scale=scale)
    y += line + pad // 2
    for panel in panels:
        canvas.text(pad, y, panel.title, scale=scale)
        y += line
        x0 = pad + label_w
        for host in panel.hosts:
            canvas.rect(x0, y - 2, bar_w, row_h - 6, GRID)
            canvas.text(pad, y + bar_h - GLYPH_H, host.name, scale=scale)
            for offset, value, color in ((0, host.before, BEFORE), (bar_h + 2, host.after, AFTER)):
                if value is None:
                    canvas.rect(x0, y + offset + bar_h // 2 - 1, bar_w // 6, 3, HATCH)
                    continue
                canvas.rect(x0, y + offset, max(1, round(min(value, 1.0) * bar_w)), bar_h,
                            color)
            note = " -> ".join("-" if v is None else f"{v:.2f}" for v in (host.before,
                                                                         host.after))
            canvas.text(x0 + bar_w + 8, y + bar_h - GLYPH_H, note, scale=scale)
            y += row_h
        y += pad
    return canvas


def write_load_chart(path: str, panels: Sequence[Panel], title: str) -> None:
    data = load_chart(panels, title).png()
    with open(path, "wb") as f:
        f.write(data)
