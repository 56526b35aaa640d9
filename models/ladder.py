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

import dataclasses
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
    eval_set: str = "../cache/eval_lfw_b"  # "" = no LFW evaluation in the run (a machine without the data)
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
    device: str = "auto"  # "auto" (CUDA when present), "cpu" or "cuda"
    teacher: str = ""  # "": the view cache's teacher.npy; else "facenet" or a ladder run, run online
    augment: bool = False  # online teacher only: jitter, light, blur, grey (facegate.models.online)
    holdout_people: float = 0.0  # share of people kept out of training: the student's cosine to the teacher on them
    holdout_seed: int | None = None  # draws the held-out people (default: seed); a continuation keeps its parent's
    pool: str = ""  # extra faces for distillation only (facegate train pool: CelebA, UTKFace); online teacher only

    def __post_init__(self) -> None:
        if self.p < 2 or self.k < 2:
            raise LadderError("p and k must be at least 2 (triplets need two people with two faces each)")
        if self.max_minutes <= 0 or self.lr <= 0:
            raise LadderError("max_minutes and lr must be positive")
        IRNConfig(tuple(self.repeats), self.input_size)  # validates the shape
        if self.augment and not self.teacher:
            raise LadderError("augment needs an online teacher (teacher = a ladder run or \"facenet\"): "
                              "the cached targets are for the plain and mirrored view only")
        if self.pool and not self.teacher:
            raise LadderError("a distillation pool has no cached targets: it needs an online teacher")
        if self.device not in ("auto", "cpu", "cuda"):
            raise LadderError(f"device must be auto, cpu or cuda, not {self.device!r}")
        if not 0.0 <= self.holdout_people < 0.5:
            raise LadderError("holdout_people must be in [0, 0.5)")

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


def load_teacher(source: str) -> InceptionResNetV1:
    """The online teacher: FaceNet itself, or a ladder run's network (frozen, in eval mode)."""
    from .facenet_import import load_facenet

    net = load_facenet() if source == "facenet" else net_from_checkpoint(load_ladder_checkpoint(source))
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise LadderError("device = \"cuda\" but torch sees no CUDA device")
    return torch.device(name)


def net_from_checkpoint(ckpt: dict[str, Any]) -> InceptionResNetV1:
    net = InceptionResNetV1(IRNConfig.from_dict(ckpt["irn"]))
    net.load_state_dict(ckpt["state"])
    return net.eval()


class _Batches:
    """P x K labelled faces plus ``extra`` random faces, drawn from (seed, step).

    ``holdout_people`` of the people (drawn from the seed alone) never enter a
    batch: :attr:`holdout` lists their faces.
    """

    def __init__(self, labels: np.ndarray, ok: np.ndarray, cfg: LadderConfig) -> None:
        self.cfg = cfg
        pool = np.flatnonzero(ok)
        people = np.unique(labels[pool][labels[pool] >= 0])
        n_out = int(round(cfg.holdout_people * len(people)))
        hseed = cfg.seed if cfg.holdout_seed is None else cfg.holdout_seed
        out = set(np.random.default_rng([hseed, 7]).choice(people, n_out, replace=False).tolist()) if n_out else set()
        held = np.isin(labels[pool], list(out)) if out else np.zeros(len(pool), bool)
        self.holdout, self.pool = pool[held], pool[~held]
        by_person: dict[int, list[int]] = {}
        for i in self.pool:
            if labels[i] >= 0:  # -1: a face for distillation only
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


@torch.no_grad()
def embed_plain(net: InceptionResNetV1, crops: np.ndarray | torch.Tensor, rows: np.ndarray, device: torch.device,
           batch: int = 64) -> np.ndarray:
    """Plain (unaugmented) embeddings of ``crops[rows]`` at the network's input size."""
    from .online import network_input, plain

    net.eval()
    out = np.zeros((len(rows), net.embedding_dim), np.float32)
    for s in range(0, len(rows), batch):
        r = rows[s:s + batch]
        x = crops[torch.as_tensor(r, device=crops.device)] if isinstance(crops, torch.Tensor) else \
            torch.from_numpy(np.ascontiguousarray(crops[r])).to(device)
        out[s:s + batch] = net(network_input(plain(x), net.config.input_size)).float().cpu().numpy()
    return out


def _evaluate(net: InceptionResNetV1, crops: np.ndarray, es: Any, rows: np.ndarray, model_id: str,
              device: torch.device, head: BinaryHead | None = None) -> dict[str, Any]:
    out = np.zeros((len(crops), net.embedding_dim), np.float32)
    out[rows] = embed_plain(net, crops, rows, device)
    rep = eval_report(es, out, model_id)
    if head is not None:
        w = head.linear.weight.detach().float().cpu().numpy().reshape(-1)
        rep.update(binary_head_report(es, out, w, float(head.linear.bias.detach()[0])))
    return {k: v for k, v in json.loads(json.dumps(rep)).items() if isinstance(v, (int, float, str))}


def is_ladder_checkpoint(path: str | Path) -> bool:
    path = Path(path)
    path = path / CHECKPOINT if path.is_dir() else path
    if not path.is_file():
        return False
    try:
        return torch.load(path, map_location="cpu", weights_only=True).get("format") == FORMAT
    except Exception:  # noqa: BLE001 - anything else is simply not ours
        return False


def evaluate_ladder_checkpoint(path: str | Path, eval_set: str | Path, threads: int | None = None) -> dict[str, Any]:
    """LFW-half figures of a rung's network (and head) on the faces of its own crop, on the CPU."""
    from facegate.edge.types import CropSpec

    if threads:
        torch.set_num_threads(threads)
    ckpt = load_ladder_checkpoint(path)
    net = net_from_checkpoint(ckpt)
    head = None
    if ckpt.get("head"):
        head = BinaryHead(net.embedding_dim)
        head.load_state_dict({k: v.float() for k, v in ckpt["head"].items()})
    es = load_eval_set(eval_set)
    name = ckpt.get("config", {}).get("name", "ladder")
    return _evaluate(net, es.views(CropSpec(**ckpt["crop"])), es, np.flatnonzero(es.ok),
                     f"{name}@{ckpt.get('step', 0)}", torch.device("cpu"), head)


def train_rung(cfg: LadderConfig, resume: bool = False, stop_at: int | None = None) -> dict[str, Any]:
    """Train one rung into ``cfg.out``; returns its last evaluation.

    ``stop_at``: end (with a checkpoint) at this step, as an interruption would.
    """
    from .online import OnlineAugment, augment, network_input, plain

    torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    out = Path(os.path.expandvars(cfg.out)).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / CHECKPOINT
    vc = load_view_cache(cfg.views)
    online = load_teacher(cfg.teacher).to(device).to(memory_format=torch.channels_last) if cfg.teacher else None
    if online is None:
        if vc.teacher is None:
            raise LadderError(f"{cfg.views} has no teacher.npy: set teacher (a ladder run or \"facenet\")")
        if cfg.input_size not in vc.specs:
            raise LadderError(f"{cfg.views} has no {cfg.input_size} px view (has {sorted(vc.specs)})")
        spec, source = vc.specs[cfg.input_size], cfg.input_size
        teacher = torch.from_numpy(vc.teacher).to(device)
    else:  # the teacher's view; a smaller student gets it resized, as the door cuts its own size
        source = vc.teacher_spec.size
        spec = dataclasses.replace(vc.teacher_spec, size=cfg.input_size)
        if source < cfg.input_size:
            raise LadderError(f"the teacher's view is {source} px, smaller than the rung's {cfg.input_size}")
    crops_np, labels_np, ok_np = np.ascontiguousarray(vc.crops(source)), vc.labels, vc.ok
    if cfg.pool:  # appended after the labelled faces, as unlabelled: extras (distillation) only
        pool = load_view_cache(cfg.pool)
        if pool.teacher_spec != vc.teacher_spec:
            raise LadderError(f"{cfg.pool}: its crop {pool.teacher_spec} is not the views' {vc.teacher_spec}")
        crops_np = np.concatenate([crops_np, np.asarray(pool.crops(source))])
        labels_np = np.concatenate([labels_np, np.full(len(pool.labels), -1, labels_np.dtype)])
        ok_np = np.concatenate([ok_np, pool.ok])
        log.info("distillation pool %s: %d faces", cfg.pool, int(pool.ok.sum()))
    crops = torch.from_numpy(crops_np).to(device)
    net = InceptionResNetV1(cfg.irn)
    head = BinaryHead(cfg.irn.embedding_dim) if cfg.binary_head > 0 else None
    params = [p for n, p in net.named_parameters() if not (cfg.freeze_stem and n.startswith("stem."))]
    groups = [{"params": [p for p in params if p.dim() > 1], "weight_decay": cfg.weight_decay, "scale": 1.0},
              {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0, "scale": 1.0}]
    if head is not None:
        groups.append({"params": list(head.parameters()), "weight_decay": 0.0, "scale": cfg.head_lr / cfg.lr})
    step, seconds, evals = 0, 0.0, []
    ckpt = None
    if ckpt_path.is_file():
        if not resume:
            raise LadderError(f"{ckpt_path} exists: pass --resume to continue it, or choose another out")
        ckpt = load_ladder_checkpoint(ckpt_path)
        net.load_state_dict(ckpt["state"])
        if head is not None and ckpt.get("head") is not None:
            head.load_state_dict(ckpt["head"])
        step, seconds, evals = int(ckpt["step"]), float(ckpt["seconds"]), list(ckpt["evals"])
        log.info("resuming %s at step %d (%.1f min)", out, step, seconds / 60)
    else:
        net.load_state_dict(_initial_state(cfg))
    net.to(device).to(memory_format=torch.channels_last)
    if head is not None:
        head.to(device)
    opt = torch.optim.AdamW(groups, lr=cfg.lr)
    if ckpt is not None:
        opt.load_state_dict(ckpt["optimizer"])
    if cfg.freeze_stem:
        for p in net.stem.parameters():
            p.requires_grad_(False)
    es = load_eval_set(cfg.eval_set) if cfg.eval_set else None
    eval_rows = np.flatnonzero(es.ok) if es is not None else None
    eval_crops = es.views(spec) if es is not None else None
    batches = _Batches(labels_np, ok_np, cfg)
    schedule = LrSchedule(cfg.lr, cfg.warmup_steps, cfg.max_steps, 60 * cfg.max_minutes,
                          min_ratio=cfg.min_lr_ratio)
    aug = OnlineAugment()
    metrics = open(out / METRICS, "a")
    stop = {"flag": False}
    old = signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))

    def save() -> None:
        state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
        atomic_write(ckpt_path, lambda f: torch.save({
            "format": FORMAT, "config": asdict(cfg), "irn": cfg.irn.to_dict(), "crop": spec_dict(spec),
            "state": state, "head": ({k: v.cpu() for k, v in head.state_dict().items()} if head is not None
                                     else None),
            "optimizer": opt.state_dict(), "step": step, "seconds": seconds, "evals": evals}, f))

    def evaluate() -> None:
        rep: dict[str, Any] = {}
        if es is not None:
            rep = _evaluate(net, eval_crops, es, eval_rows, f"{cfg.name}@{step}", device, head)
        if len(batches.holdout):  # how far the student is from the teacher on people it never saw
            s_emb = embed_plain(net, crops, batches.holdout, device)
            t_emb = (embed_plain(online, crops, batches.holdout, device) if online is not None
                     else vc.teacher[batches.holdout, 0])
            rep["holdout_cosine"] = float(np.mean(np.sum(s_emb * t_emb, axis=1)))
            rep["holdout_faces"] = int(len(batches.holdout))
        rep.update(step=step, minutes=round(seconds / 60, 2))
        evals.append(rep)
        metrics.write(json.dumps({"eval": rep}) + "\n")
        metrics.flush()
        log.info("step %d (%.1f min): %s", step, seconds / 60,
                 " ".join(f"{k} {v:.4f}" for k, v in rep.items() if isinstance(v, float) and k.startswith(
                     ("accuracy_mean", "tar_at", "holdout_cosine"))))

    if not evals and cfg.eval_at_start:
        evaluate()
        save()
    last_ckpt = last_eval = seconds
    amp = cfg.bf16 and (device.type == "cuda" or torch.backends.mkldnn.is_available())
    try:
        while (step < min(cfg.max_steps, stop_at or cfg.max_steps) and seconds < 60 * cfg.max_minutes
               and not stop["flag"]):
            t0 = time.time()
            net.train()
            rows, labels, flips, n_pk = batches(step)
            x = crops[torch.from_numpy(rows).to(device)]
            flip_t = torch.from_numpy(flips).to(device)
            if online is None:
                inp = network_input(plain(x, flip_t), cfg.input_size)
                target = teacher[torch.from_numpy(rows).to(device), flip_t.long()]
            else:
                gen = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + step)
                view = augment(x, flip_t, gen, aug) if cfg.augment else plain(x, flip_t)
                with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    target = online(network_input(view, source)).float()
                inp = network_input(view, cfg.input_size)
            lr = schedule.lr_at(step, seconds)
            for g in opt.param_groups:
                g["lr"] = lr * g["scale"]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                emb = net(inp)
            emb = emb.float()
            total = cfg.distill * L.embedding_distillation(emb, target)
            terms = {"distill": total.detach() / max(cfg.distill, 1e-12)}
            lab = torch.from_numpy(labels[:n_pk]).to(device)
            pk = emb[:n_pk]
            if cfg.triplet > 0:
                trip = L.semi_hard_triplets(pk, lab, cfg.margin)
                loss = L.triplet_loss_from_indices(pk, trip, cfg.margin)
                total = total + cfg.triplet * loss
                terms["triplet"] = loss.detach()
            if head is not None:
                gen_cpu = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
                i, j, same = L.balanced_pairs(lab, gen_cpu)
                loss = L.binary_head_loss(head.logits(pk[i].detach(), pk[j].detach()), same)
                total = total + cfg.binary_head * loss
                terms["binary_head"] = loss.detach()
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            step += 1
            seconds += time.time() - t0  # consecutive steps: the sum is the wall time, queued GPU work too
            if step % 10 == 0:
                metrics.write(json.dumps({"step": step, "minutes": round(seconds / 60, 2), "lr": lr,
                                          **{k: float(v) for k, v in terms.items()}}) + "\n")
                metrics.flush()
            if step % 50 == 0:
                log.info("step %d %.1f min lr %.2e %s", step, seconds / 60, lr,
                         " ".join(f"{k} {float(v):.4f}" for k, v in terms.items()))
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
