#!/usr/bin/env python3
"""Checks a nested case's screenshot (a PNG on stdin, written by vmkit). `WIDTH HEIGHT`: the
display case's, WIDTH x HEIGHT, top half red and bottom half blue, but for at most 1 % of the
pixels (fbcon, still bound, may draw its cursor or a line of text). `--text`: efi-shell's,
OVMF's console on virtio-gpu: lines of text on a plain background (see text_screen). Decodes PNG itself (zlib, filter types 0-4),
so no imaging library is needed. Exit 0, or 1 with one line saying what differs."""
import struct
import sys
import zlib


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def decode(data):
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG (%d bytes)" % len(data))
    pos, idat, w = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if zlib.crc32(kind + body) != struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0]:
            raise ValueError("chunk %r: bad CRC" % kind)
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            if (depth, ctype) != (8, 6):
                raise ValueError("depth %d colour type %d, expected 8-bit RGBA" % (depth, ctype))
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw, bpp, stride = zlib.decompress(idat), 4, w * 4
    rows, prev, off = [], bytearray(stride), 0
    for _ in range(h):
        f, line = raw[off], bytearray(raw[off + 1:off + 1 + stride])
        off += 1 + stride
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            line[i] = (line[i] + (0, a, b, (a + b) // 2, paeth(a, b, c))[f]) & 255
        rows.append(line)
        prev = line
    return w, h, rows


def text_screen(w, h, rows):
    """A firmware's text console drawn on the display: at least 640x480, one background colour
    over most of it, and glyphs (other pixels, 0.1 to 40 % of the screen) on at least 40 pixel
    rows, i.e. more than two lines of text."""
    if w < 640 or h < 480:
        return "%dx%d, smaller than 640x480" % (w, h)
    counts = {}
    for row in rows:
        for x in range(0, 4 * w, 4):
            px = bytes(row[x:x + 3])
            counts[px] = counts.get(px, 0) + 1
    bg, n_bg = max(counts.items(), key=lambda kv: kv[1])
    ink = w * h - n_bg
    inked_rows = sum(1 for row in rows
                     if any(bytes(row[x:x + 3]) != bg for x in range(0, 4 * w, 4)))
    if n_bg * 2 < w * h:
        return "no background: the commonest colour %s covers %d of %d pixels" % (
            tuple(bg), n_bg, w * h)
    if ink * 1000 < w * h or ink * 100 > 40 * w * h or inked_rows < 40:
        return "%d pixels on %d rows differ from the background %s: no text" % (
            ink, inked_rows, tuple(bg))
    return None


def main():
    if sys.argv[1:] == ["--text"]:
        try:
            w, h, rows = decode(sys.stdin.buffer.read())
        except (ValueError, zlib.error, struct.error, IndexError) as e:
            print(e)
            return 1
        why = text_screen(w, h, rows)
        if why:
            print(why)
            return 1
        return 0
    want_w, want_h = int(sys.argv[1]), int(sys.argv[2])
    try:
        w, h, rows = decode(sys.stdin.buffer.read())
    except (ValueError, zlib.error, struct.error, IndexError) as e:
        print(e)
        return 1
    if (w, h) != (want_w, want_h):
        print("%dx%d, expected %dx%d" % (w, h, want_w, want_h))
        return 1
    wrong, first = 0, None
    for y, row in enumerate(rows):
        want = (255, 0, 0) if y < h // 2 else (0, 0, 255)
        for x in range(w):
            px = tuple(row[4 * x:4 * x + 3])
            if px != want:
                wrong += 1
                first = first or "pixel (%d,%d) is %s, expected %s" % (x, y, px, want)
    if wrong * 100 > w * h:
        print("%d of %d pixels differ; the first: %s" % (wrong, w * h, first))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
