"""A ladder run's inputs packed small enough to travel to a borrowed accelerator, and its result back.

A GPU machine lent for a few minutes takes a bounded working tree (tens of
MB), and nothing else: no ``../shared`` data, no caches. This packs what an
online-teacher rung needs (:mod:`facegate.models.online`):

- the view cache's teacher-view crops as WebP (lossy, but the teacher and
  the student see the same decoded image, so the targets stay consistent),
  with labels and the detection mask;
- the teacher network's weights, each matrix and convolution as int8 per
  output channel with an fp16 scale (biases in fp16): the teacher is used
  only in the forward pass, and its embeddings stay within a cosine of 0.999
  of the fp32 network's (``pack`` measures and prints it).

``unpack`` rebuilds a view cache folder and a ladder run folder that
:func:`facegate.models.ladder.train_rung` reads as usual; ``slim`` writes a
finished run back as fp16 parts small enough to return (``join`` reverses
it). Run as ``python -m facegate.models.pack pack|unpack|slim|join ...``.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facegate.edge.atomic import atomic_write, atomic_write_json
from facegate.edge.errors import FacegateError

from .viewcache import load_view_cache, write_view_cache
from .views import spec_dict

log = logging.getLogger(__name__)

CROPS, OFFSETS, WEIGHTS, PACK_META = "crops.bin", "offsets.npy", "teacher_q.pt", "pack.json"


class PackError(FacegateError, ValueError):
    """A pack cannot be written or read as asked."""


def quantize_state(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Weights (dim > 1) as int8 per output channel with fp16 scales; everything else fp16."""
    out: dict[str, Any] = {}
    for k, v in state.items():
        v = v.detach().float()
        if v.dim() > 1:
            scale = v.abs().reshape(len(v), -1).amax(dim=1).clamp_min(1e-12) / 127.0
            q = torch.round(v / scale.view(-1, *[1] * (v.dim() - 1))).clamp(-127, 127).to(torch.int8)
            out[k] = {"q": q, "scale": scale.half()}
        else:
            out[k] = v.half() if v.is_floating_point() else v
    return out


def dequantize_state(packed: dict[str, Any]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in packed.items():
        if isinstance(v, dict):
            out[k] = v["q"].float() * v["scale"].float().view(-1, *[1] * (v["q"].dim() - 1))
        else:
            out[k] = v.float() if v.is_floating_point() else v
    return out


def pack(views: str | Path, teacher_run: str | Path, out: str | Path, quality: int = 80) -> dict[str, Any]:
    """Write ``out`` (crops.bin, offsets.npy, labels/ok, teacher_q.pt, pack.json); returns pack.json."""
    import cv2

    from .ladder import load_ladder_checkpoint, net_from_checkpoint
    from .online import network_input, plain

    vc = load_view_cache(views)
    crops = vc.crops(vc.teacher_spec.size)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    blobs, offsets = bytearray(), [0]
    decoded_rows = []
    for i in range(len(crops)):
        if vc.ok[i]:
            ok, buf = cv2.imencode(".webp", np.asarray(crops[i]), [cv2.IMWRITE_WEBP_QUALITY, quality])
            if not ok:
                raise PackError(f"row {i}: WebP encoding failed")
            blobs += buf.tobytes()
            decoded_rows.append(i)
        offsets.append(len(blobs))
    atomic_write(out / CROPS, lambda f: f.write(bytes(blobs)))
    np.save(out / OFFSETS, np.asarray(offsets, np.int64))
    np.save(out / "labels.npy", vc.labels)
    np.save(out / "ok.npy", vc.ok)
    ckpt = load_ladder_checkpoint(teacher_run)
    packed = quantize_state(ckpt["state"])
    atomic_write(out / WEIGHTS, lambda f: torch.save({"irn": ckpt["irn"], "crop": ckpt.get("crop"),
                                                      "state": packed}, f))
    # What the int8 weights cost the teacher, on 256 of the packed (decoded) faces.
    net = net_from_checkpoint(ckpt)
    q = net_from_checkpoint({**ckpt, "state": dequantize_state(packed)})
    rows = np.asarray(decoded_rows[:: max(1, len(decoded_rows) // 256)][:256])
    x = torch.from_numpy(np.stack([_decode(out, offsets, int(i)) for i in rows]))
    with torch.no_grad():
        inp = network_input(plain(x), net.config.input_size)
        cos = torch.nn.functional.cosine_similarity(net(inp), q(inp)).numpy()
    meta = {"teacher_view": spec_dict(vc.teacher_spec), "faces": int(np.count_nonzero(vc.ok)),
            "webp_quality": quality, "crops_bytes": len(blobs), "teacher_int8_cosine_mean": float(cos.mean()),
            "teacher_int8_cosine_min": float(cos.min()), "teacher_config": ckpt.get("config", {}).get("name")}
    atomic_write_json(out / PACK_META, meta)
    return meta


def _decode(folder: Path, offsets: Any, i: int) -> np.ndarray:
    import cv2

    with open(folder / CROPS, "rb") as f:
        f.seek(int(offsets[i]))
        buf = f.read(int(offsets[i + 1]) - int(offsets[i]))
    img = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise PackError(f"{folder / CROPS}: row {i} does not decode")
    return img


def unpack(folder: str | Path, views_out: str | Path, teacher_out: str | Path) -> None:
    """A pack -> a view cache (no teacher.npy: online teacher only) and a ladder run holding the teacher."""
    import cv2

    from facegate.edge.types import CropSpec

    from .ladder import CHECKPOINT, FORMAT

    folder = Path(folder)
    meta = json.loads((folder / PACK_META).read_text())
    spec = CropSpec(**meta["teacher_view"])
    offsets = np.load(folder / OFFSETS)
    ok = np.load(folder / "ok.npy")
    blob = (folder / CROPS).read_bytes()
    crops = np.zeros((len(ok), spec.size, spec.size, 3), np.uint8)
    for i in np.flatnonzero(ok):
        img = cv2.imdecode(np.frombuffer(blob[offsets[i]:offsets[i + 1]], np.uint8), cv2.IMREAD_COLOR)
        if img is None or img.shape != crops[i].shape:
            raise PackError(f"{folder / CROPS}: row {i} does not decode to {spec.size} px")
        crops[i] = img
    write_view_cache(views_out, {spec: crops}, np.load(folder / "labels.npy"), ok, None, spec)
    packed = torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True)
    Path(teacher_out).mkdir(parents=True, exist_ok=True)
    torch.save({"format": FORMAT, "irn": packed["irn"], "crop": packed["crop"],
                "state": dequantize_state(packed["state"]), "head": None, "step": 0, "seconds": 0.0,
                "evals": [], "config": {"name": f"{meta.get('teacher_config')} (int8 weights)"}},
               Path(teacher_out) / CHECKPOINT)
    log.info("unpacked %d faces and the teacher into %s, %s", int(ok.sum()), views_out, teacher_out)


def slim(run: str | Path, out: str | Path, part_mb: float = 15.0) -> list[Path]:
    """A finished run's checkpoint without its optimiser, fp16, in parts of at most ``part_mb`` MB."""
    from .ladder import load_ladder_checkpoint

    ckpt = load_ladder_checkpoint(run)
    ckpt.pop("optimizer", None)
    ckpt["state"] = {k: v.half() if v.is_floating_point() else v for k, v in ckpt["state"].items()}
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    data, size = buf.getvalue(), int(part_mb * 1e6)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    parts = []
    for n, s in enumerate(range(0, len(data), size)):
        p = out.with_name(f"{out.name}.part{n}")
        p.write_bytes(data[s:s + size])
        parts.append(p)
    return parts


def join(first_part: str | Path, out_run: str | Path) -> Path:
    """Parts written by :func:`slim` -> a ladder run folder (fp32 weights, no optimiser: not resumable)."""
    from .ladder import CHECKPOINT

    first = Path(first_part)
    stem = first.name.rsplit(".part", 1)[0]
    parts = sorted(first.parent.glob(f"{stem}.part*"), key=lambda p: int(p.name.rsplit("part", 1)[1]))
    ckpt = torch.load(io.BytesIO(b"".join(p.read_bytes() for p in parts)), map_location="cpu", weights_only=True)
    ckpt["state"] = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["state"].items()}
    out = Path(out_run)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / CHECKPOINT, lambda f: torch.save(ckpt, f))
    return out / CHECKPOINT


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m facegate.models.pack", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("views")
    p.add_argument("teacher_run")
    p.add_argument("out")
    p.add_argument("--quality", type=int, default=80)
    u = sub.add_parser("unpack")
    u.add_argument("folder")
    u.add_argument("views_out")
    u.add_argument("teacher_out")
    s = sub.add_parser("slim")
    s.add_argument("run")
    s.add_argument("out")
    j = sub.add_parser("join")
    j.add_argument("first_part")
    j.add_argument("out_run")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        if args.cmd == "pack":
            print(json.dumps(pack(args.views, args.teacher_run, args.out, args.quality)))
        elif args.cmd == "unpack":
            unpack(args.folder, args.views_out, args.teacher_out)
        elif args.cmd == "slim":
            print(json.dumps([str(p) for p in slim(args.run, args.out)]))
        else:
            print(join(args.first_part, args.out_run))
    except FacegateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
