"""What refusing a hostile image costs: one JSON row per file, each read in a fresh process.

    python benchmarks/image_refusal.py [--decode-control]

For each file (built here, byte by byte: a real 30000 x 30000 1-bit palette
PNG of about 109 KB, headers claiming 60000^2 PNG, 100000^2 PGM, 65535^2
JPEG, 2^24 squared WebP) it reports the outcome, wall time, the peak of
Python's traced allocations (numpy buffers included) and how much the
process's peak RSS grew, measured after a warm-up load so that library
start-up is not counted. ``--decode-control`` adds a 4000 x 4000 palette PNG
under the cap, to show what the same measure reports for a real decode.
"""

from __future__ import annotations

import argparse
import json
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

PROBE = """
import json, resource, sys, time, tracemalloc
from facegate.edge.errors import ImageError
from facegate.edge.image import load_image
load_image(sys.argv[2])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tracemalloc.start()
t = time.perf_counter()
try:
    result = "decoded %dx%d" % load_image(sys.argv[1]).shape[1::-1]
except ImageError as exc:
    result = f"{type(exc).__name__}: {exc}"
ms = (time.perf_counter() - t) * 1e3
traced = tracemalloc.get_traced_memory()[1]
grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"ms": round(ms, 2), "traced_peak_kb": traced // 1024, "rss_growth_kb": grew, "result": result}))
"""


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png(width: int, height: int, depth: int = 8, colour: int = 2, idat: bytes = zlib.compress(b"\0" * 16),
        palette: bytes = b"") -> bytes:
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))
            + (_chunk(b"PLTE", palette) if palette else b"") + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))


def palette_png(side: int) -> bytes:
    co = zlib.compressobj(9)
    row = b"\0" * (1 + (side + 7) // 8)
    return png(side, side, 1, 3, b"".join(co.compress(row) for _ in range(side)) + co.flush(), b"\0\0\0\xff\xff\xff")


def jpeg(side: int) -> bytes:
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, side, side, 3) + b"\x01\x11\x00\x02\x11\x00\x03\x11\x00"
    return b"\xff\xd8" + sof + b"\xff\xda\x00\x0c\x03\x01\x00\x02\x00\x03\x00\x00\x3f\x00" + b"\0" * 32 + b"\xff\xd9"


def webp(side: int) -> bytes:
    body = b"\0\0\0\0" + (side - 1).to_bytes(3, "little") * 2
    chunk = b"VP8X" + struct.pack("<I", 10) + body
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decode-control", action="store_true", help="also decode a 16 MP palette PNG under the cap")
    args = ap.parse_args()
    files = {
        "palette_png_30000x30000.png": palette_png(30000),
        "png_header_60000x60000.png": png(60000, 60000),
        "pgm_header_100000x100000.pgm": b"P5\n100000 100000\n255\n" + b"\0" * 64,
        "jpeg_header_65535x65535.jpg": jpeg(65535),
        "webp_header_16777216x16777216.webp": webp(1 << 24),
    }
    if args.decode_control:
        files["palette_png_4000x4000.png"] = palette_png(4000)
    with tempfile.TemporaryDirectory() as tmp:
        warm = Path(tmp) / "warm.png"
        warm.write_bytes(png(4, 4, idat=zlib.compress(b"\0" * 52)))
        for name, data in files.items():
            path = Path(tmp) / name
            path.write_bytes(data)
            out = subprocess.run([sys.executable, "-c", PROBE, str(path), str(warm)], capture_output=True, text=True,
                                 check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            row["result"] = row["result"].replace(str(path), name)
            print(json.dumps({"file": name, "bytes": len(data), **row}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
