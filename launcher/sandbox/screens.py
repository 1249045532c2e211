"""Small PNG "screenshots" for the sandbox's message histories, drawn in pure Python.

A real computer-use agent gets a screenshot back after each action; the sandbox answers with a
256×160 picture of a pretend desktop — a window, some lines of text, a button — that changes
from step to step, with a red cross where the agent last clicked. Palette PNGs of flat shapes
compress to well under a kilobyte, so a run's history stays small.
"""

import base64
import random
import struct
import zlib

WIDTH, HEIGHT = 256, 160
# The agent's coordinates are on a 1280×800 screen.
SCREEN_WIDTH, SCREEN_HEIGHT = 1280, 800

_PALETTE = (
    (0x2B, 0x3A, 0x55),  # 0 desktop
    (0xF4, 0xF6, 0xFA),  # 1 window
    (0xD0, 0xD6, 0xE2),  # 2 title bar, fields
    (0x2F, 0x5B, 0xD3),  # 3 accent (buttons, links)
    (0x9A, 0xA3, 0xB5),  # 4 text
    (0xE5, 0x48, 0x4D),  # 5 the pointer
    (0x1C, 0x7C, 0x46),  # 6 success
)


def screenshot_png(*, seed: str, step: int, pointer: tuple[int, int] | None = None) -> bytes:
    rng = random.Random(f"{seed}:{step}")
    pixels = bytearray([0]) * (WIDTH * HEIGHT)

    def rect(x0: int, y0: int, x1: int, y1: int, colour: int) -> None:
        for y in range(max(0, y0), min(HEIGHT, y1)):
            row = y * WIDTH
            for x in range(max(0, x0), min(WIDTH, x1)):
                pixels[row + x] = colour

    left, top = 16 + rng.randint(0, 8), 12 + rng.randint(0, 6)
    rect(left, top, WIDTH - 16, HEIGHT - 12, 1)  # the window
    rect(left, top, WIDTH - 16, top + 10, 2)  # its title bar
    y = top + 18
    for _ in range(rng.randint(4, 7)):  # lines of text
        rect(left + 10, y, left + 10 + rng.randint(60, 170), y + 4, 4)
        y += 11
    field_y = min(y + 2, HEIGHT - 40)
    rect(left + 10, field_y, left + 130, field_y + 10, 2)  # an input field
    rect(left + 140, field_y, left + 180, field_y + 10, 3)  # a button
    if step % 3 == 2:
        rect(left + 10, field_y + 16, left + 90, field_y + 20, 6)  # a confirmation line
    if pointer is not None:
        px = pointer[0] * WIDTH // SCREEN_WIDTH
        py = pointer[1] * HEIGHT // SCREEN_HEIGHT
        rect(px - 5, py - 1, px + 6, py + 1, 5)
        rect(px - 1, py - 5, px + 1, py + 6, 5)
    return _png(pixels)


def screenshot_base64(*, seed: str, step: int, pointer: tuple[int, int] | None = None) -> str:
    return base64.b64encode(screenshot_png(seed=seed, step=step, pointer=pointer)).decode()


def _png(pixels: bytearray) -> bytes:
    raw = b"".join(
        b"\x00" + bytes(pixels[y * WIDTH : (y + 1) * WIDTH]) for y in range(HEIGHT)
    )  # filter type 0 on every row
    header = struct.pack(">IIBBBBB", WIDTH, HEIGHT, 8, 3, 0, 0, 0)  # 8-bit palette
    palette = b"".join(bytes(colour) for colour in _PALETTE)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"PLTE", palette)
        + _chunk(b"IDAT", zlib.compress(raw, 9))
        + _chunk(b"IEND", b"")
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
