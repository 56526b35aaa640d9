"""Training the Inception-ResNet rungs: fine-tune FaceNet, or compress it, always from its weights.

One loop serves both jobs of the ladder:

- **fine-tune** (``repeats = [5, 10, 5]``, ``input_size = 160``): FaceNet's own
  network as our Siamese network, with semi-hard triplets and the binary
  head on the labelled training people, and a distillation term towards the
  frozen original so that 11 k images refine it rather than erase it;
- **compress** (fewer repeats, a lower input): the rung starts from the full
  network's blocks (:func:`facegate.models.irn.select_blocks`) and is pulled
  back onto the teacher by distillation plus triplets.

The teacher's targets were computed on exactly the view the student gets
(:mod:`facegate.models.viewcache`: the same face, mirrored or not), so no
target is computed on a different image. Batches are P people x K images
(for triplets and the head) plus extra random faces that only distillation
uses. Each step draws from a generator seeded by (seed, step): a resumed
run sees the same batches. Checkpoints every few minutes and at the end;
metrics as JSON lines.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facegate.edge.atomic import atomic_write
from facegate.edge.errors import FacegateError

from . import losses as L
from .data import preprocess
from .evalset import binary_head_report, eval_report, load_eval_set
from .irn import FULL_REPEATS, IRNConfig, InceptionResNetV1, input_spec, select_blocks
from .network import BinaryHead
from .objective import LrSchedule
from .viewcache import load_view_cache
from .views import spec_dict

log = logging.getLogger(__name__)

CHECKPOINT, METRICS, FORMAT = "checkpoint.pt", "metrics.jsonl", "facegate-irn-ladder-1"


class LadderError(FacegateError, ValueError):
    """A ladder recipe or run folder cannot be used as asked."""


@dataclass(frozen=True)
class LadderConfig:
    """One rung's recipe (``models/recipes/irn_*.toml``)."""

    views: str = "../cache/views"
    eval_set: str = "../cache/eval_lfw_b"
    out: str = "../runs/irn"
    name: str = "facegate-irn"
    repeats: tuple[int, int, int] = (5, 10, 5)
    input_size: int = 160
    init_from: str = "facenet"  # "facenet" (the imported graph) or a ladder checkpoint / run folder
    max_minutes: float = 30.0
    max_steps: int = 1_000_000
    lr: float = 3e-4
    min_lr_ratio: float = 0.05
    warmup_steps: int = 30
    weight_decay: float = 1e-4
    p: int = 12
    k: int = 4
    extra: int = 16  # faces per step for distillation only
    distill: float = 1.0
    triplet: float = 0.1
    margin: float = 0.2
    binary_head: float = 0.05
    head_lr: float = 1e-2  # the head starts at zero and is convex in its weights: its own, larger rate
    freeze_stem: bool = False
    eval_every_minutes: float = 15.0
    eval_at_start: bool = True  # the starting point's figures (the "before"); off when already measured
    checkpoint_every_minutes: float = 5.0
    threads: int = 2
    seed: int = 0
    bf16: bool = True

    def __post_init__(self) -> None:
        if self.p < 2 or self.k < 2:
            raise LadderError("p and k must be at least 2 (triplets need two people with two faces each)")
        if self.max_minutes <= 0 or self.lr <= 0:
            raise LadderError("max_minutes and lr must be positive")
        IRNConfig(tuple(self.repeats), self.input_size)  # validates the shape

    @property
    def irn(self) -> IRNConfig:
        return IRNConfig(repeats=tuple(self.repeats), input_size=self.input_size)  # type: ignore[arg-type]

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> LadderConfig:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise LadderError(f"{path}: {exc}") from None
        data.update(overrides)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise LadderError(f"{path}: unknown key(s) {', '.join(unknown)}")
        if "repeats" in data:
            data["repeats"] = tuple(int(r) for r in data["repeats"])
        try:
            return cls(**data)
        except TypeError as exc:
            raise LadderError(f"{path}: {exc}") from None


def _initial_state(cfg: LadderConfig) -> dict[str, torch.Tensor]:
    from .facenet_import import load_facenet

    if cfg.init_from == "facenet":
        return select_blocks(load_facenet().state_dict(), cfg.irn)
    ckpt = load_ladder_checkpoint(cfg.init_from)
    src = IRNConfig.from_dict(ckpt["irn"])
    if src.repeats == cfg.irn.repeats:
        return ckpt["state"]
    if src.repeats == FULL_REPEATS:  # a fine-tuned full network: take its blocks as from FaceNet's
        return select_blocks(ckpt["state"], cfg.irn)
    raise LadderError(f"init_from {cfg.init_from}: repeats {src.repeats}, the recipe's {cfg.irn.repeats}")


def load_ladder_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(os.path.expandvars(str(path))).expanduser()
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise LadderError(f"{path}: no checkpoint")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt.get("format") != FORMAT:
        raise LadderError(f"{path}: not a ladder checkpoint (format {ckpt.get('format')!r})")
    return ckpt


def net_from_checkpoint(ckpt: dict[str, Any]) -> InceptionResNetV1:
    net = InceptionResNetV1(IRNConfig.from_dict(ckpt["irn"]))
    net.load_state_dict(ckpt["state"])
    return net.eval()


class _Batches:
    """P x K labelled faces plus ``extra`` random faces, drawn from (seed, step)."""

    def __init__(self, labels: np.ndarray, ok: np.ndarray, cfg: LadderConfig) -> None:
        self.cfg = cfg
        self.pool = np.flatnonzero(ok)
        by_person: dict[int, list[int]] = {}
        for i in self.pool:
            by_person.setdefault(int(labels[i]), []).append(int(i))
        self.people = [np.array(v) for v in by_person.values() if len(v) >= 2]
        if len(self.people) < cfg.p:
            raise LadderError(f"only {len(self.people)} people with two faces; p = {cfg.p}")

    def __call__(self, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        rng = np.random.default_rng([self.cfg.seed, step])
        idx, lab = [], []
        for n, person in enumerate(rng.choice(len(self.people), self.cfg.p, replace=False)):
            faces = self.people[person]
            idx.extend(rng.choice(faces, self.cfg.k, replace=len(faces) < self.cfg.k))
            lab.extend([n] * self.cfg.k)
        extra = rng.choice(self.pool, self.cfg.extra, replace=False) if self.cfg.extra else np.zeros(0, int)
        rows = np.concatenate([np.asarray(idx, int), extra])
        labels = np.concatenate([np.asarray(lab), -1 - np.arange(len(extra))])  # extras: each its own person
        flips = rng.random(len(rows)) < 0.5
        return rows, labels, flips, len(idx)


def _evaluate(net: InceptionResNetV1, crops: np.ndarray, es: Any, rows: np.ndarray, model_id: str,
              head: BinaryHead | None = None) -> dict[str, Any]:
    net.eval()
    spec = input_spec(net.config.input_size)
    out = np.zeros((len(crops), net.embedding_dim), np.float32)
    with torch.no_grad():
        for s in range(0, len(rows), 64):
            r = rows[s:s + 64]
            out[r] = net(torch.from_numpy(preprocess(crops[r], spec))).numpy()
    rep = eval_report(es, out, model_id)
    if head is not None:
        w = head.linear.weight.detach().numpy().reshape(-1)
        rep.update(binary_head_report(es, out, w, float(head.linear.bias.detach()[0])))
    return {k: v for k, v in json.loads(json.dumps(rep)).items() if isinstance(v, (int, float, str))}


def train_rung(cfg: LadderConfig, resume: bool = False, stop_at: int | None = None) -> dict[str, Any]:
    """Train one rung into ``cfg.out``; returns its last evaluation.

    ``stop_at``: end (with a checkpoint) at this step, as an interruption would.
    """
    torch.set_num_threads(cfg.threads)
    out = Path(os.path.expandvars(cfg.out)).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / CHECKPOINT
    vc = load_view_cache(cfg.views)
    if cfg.input_size not in vc.specs:
        raise LadderError(f"{cfg.views} has no {cfg.input_size} px view (has {sorted(vc.specs)})")
    spec = vc.specs[cfg.input_size]
    crops = np.asarray(vc.crops(cfg.input_size))
    teacher = torch.from_numpy(vc.teacher)
    net = InceptionResNetV1(cfg.irn)
    head = BinaryHead(cfg.irn.embedding_dim) if cfg.binary_head > 0 else None
    params = [p for n, p in net.named_parameters() if not (cfg.freeze_stem and n.startswith("stem."))]
    groups = [{"params": [p for p in params if p.dim() > 1], "weight_decay": cfg.weight_decay, "scale": 1.0},
              {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0, "scale": 1.0}]
    if head is not None:
        groups.append({"params": list(head.parameters()), "weight_decay": 0.0, "scale": cfg.head_lr / cfg.lr})
    opt = torch.optim.AdamW(groups, lr=cfg.lr)
    step, seconds, evals = 0, 0.0, []
    if ckpt_path.is_file():
        if not resume:
            raise LadderError(f"{ckpt_path} exists: pass --resume to continue it, or choose another out")
        ckpt = load_ladder_checkpoint(ckpt_path)
        net.load_state_dict(ckpt["state"])
        if head is not None and ckpt.get("head") is not None:
            head.load_state_dict(ckpt["head"])
        opt.load_state_dict(ckpt["optimizer"])
        step, seconds, evals = int(ckpt["step"]), float(ckpt["seconds"]), list(ckpt["evals"])
        log.info("resuming %s at step %d (%.1f min)", out, step, seconds / 60)
    else:
        net.load_state_dict(_initial_state(cfg))
    if cfg.freeze_stem:
        for p in net.stem.parameters():
            p.requires_grad_(False)
    es = load_eval_set(cfg.eval_set)
    eval_rows = np.flatnonzero(es.ok)
    eval_crops = es.views(spec)
    batches = _Batches(vc.labels, vc.ok, cfg)
    schedule = LrSchedule(cfg.lr, cfg.warmup_steps, cfg.max_steps, 60 * cfg.max_minutes,
                          min_ratio=cfg.min_lr_ratio)
    in_spec = input_spec(cfg.input_size)
    metrics = open(out / METRICS, "a")
    stop = {"flag": False}
    old = signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))

    def save() -> None:
        atomic_write(ckpt_path, lambda f: torch.save({
            "format": FORMAT, "config": asdict(cfg), "irn": cfg.irn.to_dict(), "crop": spec_dict(spec),
            "state": net.state_dict(), "head": head.state_dict() if head is not None else None,
            "optimizer": opt.state_dict(), "step": step, "seconds": seconds, "evals": evals}, f))

    def evaluate() -> None:
        rep = _evaluate(net, eval_crops, es, eval_rows, f"{cfg.name}@{step}", head)
        rep.update(step=step, minutes=round(seconds / 60, 2))
        evals.append(rep)
        metrics.write(json.dumps({"eval": rep}) + "\n")
        metrics.flush()
        log.info("step %d (%.1f min): acc %.4f tar@1e-3 %.3f tar@1e-4 %.3f", step, seconds / 60,
                 rep["accuracy_mean"], rep["tar_at_far_1e-3"], rep["tar_at_far_1e-4"])

    if not evals and cfg.eval_at_start:
        evaluate()
        save()
    last_ckpt = last_eval = seconds
    amp = cfg.bf16 and torch.backends.mkldnn.is_available()
    try:
        while (step < min(cfg.max_steps, stop_at or cfg.max_steps) and seconds < 60 * cfg.max_minutes
               and not stop["flag"]):
            t0 = time.time()
            net.train()
            rows, labels, flips, n_pk = batches(step)
            x = crops[rows]
            x = np.where(flips[:, None, None, None], x[:, :, ::-1], x)
            target = teacher[rows, torch.from_numpy(flips.astype(np.int64))]
            lr = schedule.lr_at(step, seconds)
            for g in opt.param_groups:
                g["lr"] = lr * g["scale"]
            inp = torch.from_numpy(preprocess(x, in_spec)).contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                emb = net(inp)
            emb = emb.float()
            total = cfg.distill * L.embedding_distillation(emb, target)
            terms = {"distill": float(total.detach()) / max(cfg.distill, 1e-12)}
            lab = torch.from_numpy(labels[:n_pk])
            pk = emb[:n_pk]
            if cfg.triplet > 0:
                trip = L.semi_hard_triplets(pk, lab, cfg.margin)
                loss = L.triplet_loss_from_indices(pk, trip, cfg.margin)
                total = total + cfg.triplet * loss
                terms["triplet"] = float(loss.detach())
            if head is not None:
                gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
                i, j, same = L.balanced_pairs(lab, gen)
                loss = L.binary_head_loss(head.logits(pk[i].detach(), pk[j].detach()), same)
                total = total + cfg.binary_head * loss
                terms["binary_head"] = float(loss.detach())
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            step += 1
            seconds += time.time() - t0
            if step % 10 == 0:
                metrics.write(json.dumps({"step": step, "minutes": round(seconds / 60, 2), "lr": lr, **terms}) + "\n")
                metrics.flush()
            if step % 50 == 0:
                log.info("step %d %.1f min lr %.2e %s", step, seconds / 60, lr,
                         " ".join(f"{k} {v:.4f}" for k, v in terms.items()))
            if seconds - last_eval >= 60 * cfg.eval_every_minutes:
                evaluate()
                last_eval = seconds
            if seconds - last_ckpt >= 60 * cfg.checkpoint_every_minutes:
                save()
                last_ckpt = seconds
        if not evals or evals[-1].get("step") != step:
            evaluate()
        save()
    finally:
        signal.signal(signal.SIGTERM, old)
        metrics.close()
    return evals[-1]
