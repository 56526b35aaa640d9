"""``facegate train run``: the training loop, resumable, CPU or CUDA/DDP.

What a step minimises is :mod:`.objective`; the recipe is :mod:`.recipe`;
what the run writes is :mod:`.checkpoint`.

Reproducibility: every random draw is a function of (seed, rank, epoch or
step): the P x K batches (:class:`PKBatchSampler`), the augmentations
(:class:`FaceCropDataset`), the extra distillation images and the
miners' / pair sampler's generators. A resumed run therefore replays exactly
the batches an uninterrupted one would have seen; the checkpoint still carries
the global RNG states (dropout, if any). Under DDP each rank draws from its own
seed stream, so ranks see different batches.

A time budget (``max_minutes``) counts training time only (not evaluation or
checkpoint writing), so recipes with the same budget are compared fairly;
the cosine schedule then follows the elapsed share of the budget.

With ``export = true`` the run ends by exporting its bundles through the
``facegate.exporters`` entry point (:func:`facegate.export.run.export_run`):
the training side never imports :mod:`facegate.export`, and a run without
the export package still ends with its checkpoint and ``result.json``.
"""

from __future__ import annotations

import copy
import json
import logging
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from facegate.edge.atomic import atomic_write_json, atomic_write_text

from .checkpoint import (BUNDLE_NAME, CHECKPOINT, TrainState, initial_weights, load_checkpoint, restore_checkpoint,
                         save_checkpoint)
from .data import AugmentConfig, Collate, FaceCropDataset, PKBatchSampler, describe
from .distributed import Dist, barrier, setup_distributed, sync_stop, teardown, wrap
from .evalset import EvalSet, build_eval_set, load_eval_set
from .evaluate import evaluate_model, summary
from .network import FaceEmbeddingNet
from .objective import LrSchedule, TrainModel, autocast_dtype, make_optimizer
from .prepare import PreparedCache, load_cache
from .recipe import TrainConfig, TrainError, build_net_config, expand_path

log = logging.getLogger(__name__)

METRICS = "metrics.jsonl"
RESULT = "result.json"
BUNDLES = "bundles"  # the run's bundle folders: facegate-mfn-onnx-fp32/, facegate-mfn-onnx-int8/
EXPORTERS = "facegate.exporters"  # entry-point group: name -> export_run-like callable
EXPORT_HINT = "pip install 'facegate[export]'"


# --- data for a step ----------------------------------------------------------------------
def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


def _extra_pool(cache: PreparedCache, cfg: TrainConfig) -> np.ndarray:
    """Rows eligible for the distillation-only images: at least one needed teacher embedding."""
    has = np.zeros(len(cache), bool)
    for t in cfg.teachers:
        has |= np.isfinite(cache.teachers[t]).all(axis=1)
    if cfg.distill_extra_pool == "singletons":
        counts = np.bincount(cache.labels, minlength=len(cache.people))
        single = has & (counts[cache.labels] == 1)
        if single.any():
            return np.flatnonzero(single)
        log.warning("no single-image person with a teacher embedding; extra distillation images drawn from all")
    return np.flatnonzero(has)


def _step_batches(sampler: PKBatchSampler, start: int, first_step: int, extra: int, pool: np.ndarray,
                  seed: int, rank: int) -> list[list[int]]:
    """The epoch's P x K batches from ``start`` on, each followed by its extra distillation rows."""
    out = []
    for n, batch in enumerate(list(sampler)[start:]):
        if extra and len(pool):
            rng = np.random.default_rng([seed, rank, first_step + n, 7])
            batch = batch + rng.choice(pool, size=extra, replace=len(pool) < extra).tolist()
        out.append(batch)
    return out


# --- the run -------------------------------------------------------------------------------
@dataclass
class TrainResult:
    net: FaceEmbeddingNet
    model: TrainModel
    state: TrainState
    report: dict[str, Any] | None
    out: Path
    checkpoint: Path
    bundle: Path | None = None  # the fp32 ONNX bundle
    interrupted: bool = False
    export: dict[str, Any] | None = None  # export_run's summary (also in result.json)


class _StopSignal:
    """SIGINT / SIGTERM ask for a clean stop at the end of the step (a second one is not caught)."""

    def __init__(self) -> None:
        self.requested = False
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> _StopSignal:
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._saved[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: no signal handling
            self._saved.clear()
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        log.warning("signal %d: stopping after this step (send again to abort)", signum)
        signal.signal(signum, self._saved.get(signum, signal.SIG_DFL))

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)


class MetricsLog:
    """JSON lines, rank 0 only; on resume, lines past the checkpoint's step are dropped (they will be redone)."""

    def __init__(self, path: Path, enabled: bool, resume_step: int | None) -> None:
        self.path, self.enabled = path, enabled
        if enabled and resume_step is not None and path.is_file():
            keep = [ln for ln in path.read_text().splitlines() if ln.strip()
                    and json.loads(ln).get("step", 0) <= resume_step]
            atomic_write_text(path, "".join(ln + "\n" for ln in keep))
        elif enabled and resume_step is None and path.is_file():
            path.unlink()

    def write(self, row: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")


def train(cfg: TrainConfig, resume: bool = False, progress: bool | None = None) -> TrainResult:
    """Train (or continue) one run in ``cfg.out``; see the module docstring.

    ``resume``: continue from ``out/checkpoint.pt`` if there is one (start
    afresh if not); without it an existing checkpoint is an error. ``progress``:
    a tqdm bar (None: only when stderr is a terminal).
    """
    d = setup_distributed(cfg)
    try:
        return _train(cfg, d, resume, progress)
    finally:
        teardown(d)


def _open_run(cfg: TrainConfig, out: Path, resume: bool) -> dict[str, Any] | None:
    """The run folder's checkpoint to resume from, None for a new run; refuses to overwrite a run."""
    ckpt_path = out / CHECKPOINT
    if not ckpt_path.is_file():
        if resume:
            log.info("%s: no checkpoint, starting a new run", out)
        return None
    if not resume:
        raise TrainError(f"{out} holds a run already; pass --resume to continue it or choose another out")
    ckpt = load_checkpoint(ckpt_path, map_location="cpu")
    changed = {k for k, v in cfg.to_dict().items() if ckpt["config"].get(k) != v}
    if changed:
        log.warning("resuming with changed settings: %s", ", ".join(sorted(changed)))
    return ckpt


def _load_cache(cfg: TrainConfig, d: Dist) -> PreparedCache:
    cache = load_cache(expand_path(cfg.cache))
    if d.main:
        log.info("cache %s: %s", cache.folder, describe(cache))
    for t in cfg.teachers:
        if t not in cache.teachers or not np.isfinite(cache.teachers[t]).all(axis=1).any():
            raise TrainError(f"distillation from {t} asked for, but the cache has no {t} embeddings")
    return cache


def _load_eval_set(cfg: TrainConfig, progress: bool | None) -> EvalSet | None:
    """The run's LFW split-B crops, built first if the folder is not there yet."""
    if not cfg.eval_cache:
        return None
    folder = expand_path(cfg.eval_cache)
    if not (folder / "meta.json").is_file():
        log.info("%s: building the LFW split-B evaluation set first (a few minutes)", folder)
        try:
            build_eval_set(folder, workers=min(2, cfg.threads), progress=bool(progress))
        except FileNotFoundError as exc:
            raise TrainError(f"eval_cache {folder} does not exist and cannot be built: {exc}") from None
    return load_eval_set(folder)


def _budget_left(cfg: TrainConfig, state: TrainState) -> bool:
    """False once the run is over; ``state.stop_reason`` then says why."""
    if cfg.max_steps is not None and state.step >= cfg.max_steps:
        state.stop_reason = "max_steps"
        return False
    if cfg.max_minutes is not None and state.seconds >= cfg.max_minutes * 60.0:
        state.stop_reason = "max_minutes"
        return False
    if state.epoch >= cfg.epochs:
        state.stop_reason = "epochs"
        return False
    return True


def _train(cfg: TrainConfig, d: Dist, resume: bool, progress: bool | None) -> TrainResult:
    torch.set_num_threads(cfg.threads)
    out = expand_path(cfg.out)
    ckpt_path = out / CHECKPOINT
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
    barrier(d)
    ckpt = _open_run(cfg, out, resume)
    net_cfg = build_net_config(cfg.net)
    # a bad init_from fails now, not after the caches are read (and before the seed, which it would consume)
    initial = initial_weights(cfg.init_from, net_cfg) if ckpt is None and cfg.init_from else None
    cache = _load_cache(cfg, d)
    eval_set = _load_eval_set(cfg, progress) if d.main else None

    # model, optimiser, schedule (identical initial weights on every rank)
    torch.manual_seed(cfg.seed)
    model = TrainModel(FaceEmbeddingNet(net_cfg), cfg).to(d.device)
    model.amp = autocast_dtype(d.device) if cfg.amp else None
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, cfg)
    scaler = torch.amp.GradScaler("cuda", enabled=model.amp == torch.float16)
    sampler_seed = cfg.seed + 1_000_003 * d.rank  # each rank its own P x K stream
    sampler = PKBatchSampler(cache.labels, cfg.p, cfg.k, cfg.steps_per_epoch, seed=sampler_seed)
    steps_per_epoch = len(sampler)
    total_steps = cfg.epochs * steps_per_epoch
    schedule = LrSchedule(cfg.lr, cfg.warmup_steps, total_steps,
                          cfg.max_minutes * 60.0 if cfg.max_minutes else None, cfg.schedule, cfg.min_lr_ratio)
    state = TrainState()
    report: dict[str, Any] | None = None
    if ckpt is not None:
        state, report = restore_checkpoint(ckpt, ckpt_path, model, optimizer, schedule, scaler)
        log.info("resumed at epoch %d, step %d (%.0f s trained)", state.epoch, state.step, state.seconds)
    elif initial is not None:
        model.net.load_state_dict(initial)
        log.info("network initialised from %s", cfg.init_from)
    wrapped = wrap(model, d)

    dataset = FaceCropDataset(cache, augment_config=AugmentConfig() if cfg.augment else None, seed=sampler_seed)
    collate = Collate(cache, cfg.teachers, centre=cfg.centre_teachers)
    pool = _extra_pool(cache, cfg) if cfg.distill_extra_batch else np.zeros(0, np.int64)
    n_pk = cfg.p * cfg.k
    metrics = MetricsLog(out / METRICS, d.main, state.step if ckpt is not None else None)

    def save() -> None:
        if d.main:
            save_checkpoint(ckpt_path, cfg, net_cfg, model, optimizer, schedule, scaler, state, report, d.world)

    def evaluate() -> None:
        nonlocal report
        state.eval_step = state.step  # on every rank, evaluated or not: the ranks must agree
        if eval_set is not None:
            # a contiguous copy: the figures of the network exactly as its checkpoint loads (and exports)
            plain = copy.deepcopy(model.net).to(memory_format=torch.contiguous_format)
            report = evaluate_model(plain, eval_set, model.binary_head, f"{BUNDLE_NAME}-step{state.step}",
                                    cfg.eval_batch, d.device)
            metrics.write({"kind": "eval", "step": state.step, "epoch": state.epoch,
                           "seconds": round(state.seconds, 1), **report})
            log.info("eval at step %d: %s", state.step, summary(report))
        barrier(d)

    show = d.main and (progress if progress is not None else sys.stderr.isatty())
    from tqdm import tqdm

    bar = tqdm(total=total_steps, initial=state.step, desc="train", unit="step", disable=not show, dynamic_ncols=True)
    model.train()
    interrupted = False
    window: dict[str, float] = {}
    window_steps, window_images, window_t = 0, 0, 0.0
    state.stop_reason = ""
    try:
        with _StopSignal() as stop:
            while not sync_stop(not _budget_left(cfg, state), state, d):
                sampler.set_epoch(state.epoch)
                dataset.set_epoch(state.epoch)
                batches = _step_batches(sampler, state.epoch_step, state.step, cfg.distill_extra_batch, pool,
                                        cfg.seed, d.rank)
                # a private generator: creating the iterator must not draw from the global RNG
                # (it would shift dropout's stream between a resumed and an uninterrupted run)
                loader = DataLoader(dataset, batch_sampler=batches, collate_fn=collate,
                                    num_workers=cfg.loader_workers,
                                    generator=torch.Generator().manual_seed(_seed(cfg.seed, d.rank, state.epoch)))
                stop_now = False
                t_prev = time.perf_counter()
                for batch in loader:
                    batch = batch.to(d.device, channels_last=cfg.channels_last)
                    lr = schedule.apply(optimizer, state.step, state.seconds)
                    gen = torch.Generator().manual_seed(_seed(cfg.seed, d.rank, state.step))
                    loss, terms = wrapped(batch.images, batch.labels, n_pk, batch.teachers, gen)
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    if cfg.grad_clip > 0:
                        scaler.unscale_(optimizer)
                        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    scaler.step(optimizer)
                    scaler.update()
                    now = time.perf_counter()
                    dt = now - t_prev
                    state.step += 1
                    state.epoch_step += 1
                    state.seconds += dt
                    for key, v in terms.items():
                        window[key] = window.get(key, 0.0) + v
                    window_steps += 1
                    window_images += len(batch.images)
                    window_t += dt
                    bar.update()
                    if show:
                        bar.set_postfix(loss=f"{terms['loss']:.4f}", lr=f"{lr:.2e}", refresh=False)
                    if window_steps >= cfg.log_every or state.epoch_step == steps_per_epoch:
                        metrics.write({"kind": "train", "step": state.step, "epoch": state.epoch,
                                       "epoch_step": state.epoch_step, "lr": lr, "seconds": round(state.seconds, 2),
                                       **{k: v / window_steps for k, v in window.items()},
                                       "steps_per_s": window_steps / max(window_t, 1e-9),
                                       "images_per_s": window_images / max(window_t, 1e-9)})
                        window, window_steps, window_images, window_t = {}, 0, 0, 0.0
                    stop_now = sync_stop(stop.requested or not _budget_left(cfg, state), state, d)
                    if stop_now:
                        break
                    t_prev = time.perf_counter()  # logging and syncing are not training time
                interrupted = sync_stop(stop.requested, state, d)
                if state.epoch_step >= steps_per_epoch:
                    state.epoch += 1
                    state.epoch_step = 0
                    due = cfg.eval_every_epochs and state.epoch % cfg.eval_every_epochs == 0
                    if due and not interrupted:
                        evaluate()
                    log.info("epoch %d done (step %d, %.0f s)", state.epoch, state.step, state.seconds)
                save()
                barrier(d)
                if stop_now:
                    break
    finally:
        bar.close()
    if interrupted:
        state.stop_reason = "interrupted"
        log.warning("interrupted at step %d; continue with --resume", state.step)
        return TrainResult(model.net, model, state, report, out, ckpt_path, None, True)
    _budget_left(cfg, state)  # records why the run ended
    log.info("training ended (%s) at step %d after %.0f s", state.stop_reason, state.step, state.seconds)
    if state.eval_step != state.step:
        evaluate()
    save()
    bundle, exported = None, None
    if d.main:
        if cfg.export and report is not None:
            exported = _export(cfg, ckpt_path, out / BUNDLES, cache.folder)
            bundle = Path(exported["bundle"]) if exported["bundle"] else None
        elif cfg.export:
            log.warning("no bundle exported: no evaluation (set eval_cache) to take thresholds from")
        atomic_write_json(out / RESULT, {"stop_reason": state.stop_reason, "steps": state.step, "epochs": state.epoch,
                                         "seconds": round(state.seconds, 1), "eval": report,
                                         "bundle": str(bundle) if bundle else None, "export": exported,
                                         "config": cfg.to_dict()}, indent=1)
    barrier(d)
    return TrainResult(model.net, model, state, report, out, ckpt_path, bundle, False, exported)


# --- the end-of-run export ----------------------------------------------------------------------
def find_exporter(name: str = "onnx") -> Callable[..., dict[str, Any]] | None:
    """The ``facegate.exporters`` entry point ``name`` (e.g. :func:`facegate.export.run.export_run`), loaded;
    None when no installed package provides it or it cannot be imported."""
    from importlib.metadata import entry_points

    for ep in entry_points(group=EXPORTERS, name=name):
        try:
            return ep.load()
        except ImportError as exc:
            log.warning("exporter %s (%s) cannot be imported: %s", name, ep.value, exc)
    return None


def _export(cfg: TrainConfig, checkpoint: Path, out: Path, calib: Path) -> dict[str, Any]:
    """The run's bundles and weights files; never raises (the checkpoint is saved: the export can be redone)."""
    exporter = find_exporter("onnx")
    if exporter is None:
        error = f"no '{EXPORTERS}' entry point 'onnx' (is facegate's export package installed?)"
        log.warning("no bundle exported: %s; %s, then run facegate export onnx %s --out %s",
                    error, EXPORT_HINT, checkpoint, out)
        return {"bundle": None, "bundles": [], "weights": [], "error": error}
    return exporter(checkpoint, out, calib=calib, parity=expand_path(cfg.eval_cache) if cfg.eval_cache else None,
                    version=cfg.bundle_version, min_int8_cosine=cfg.export_min_int8_cosine, threads=cfg.threads)
