"""``facegate gallery publish FILE`` and ``facegate gallery signkey FILE``: one household, one signed gallery.

Added to the ``gallery`` command when another module registered it first (the
backups: ``export``, ``import``, ...), else registered with the same shape:
``facegate gallery ACTION [FILE]``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import ConfigError, FacegateError

__all__ = ["register"]

ACTIONS = ("publish", "signkey")
DEFAULT_CONFIG = Path("/etc/facegate/facegate.toml")


def cmd_signkey(args: argparse.Namespace) -> int:
    from .snapshot import generate_keypair

    if args.file is None:
        raise FacegateError("gallery signkey needs a FILE for the new private key")
    public = generate_keypair(args.file)
    out = {"private_key": str(args.file), "public_key": str(public)}
    print(json.dumps(out) if args.json else
          f"signing key {args.file} (keep it on the publishing machine, mode 0600); "
          f"give every door {public} as [mqtt] gallery_public_key")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    """Sign an exported gallery and leave it retained on the household topic."""
    from ..config import Config
    from .link import publish_once
    from .snapshot import load_private_key, open_snapshot, seal_snapshot

    if args.file is None:
        raise FacegateError("gallery publish needs FILE: the encrypted gallery export (facegate gallery export)")
    if args.signing_key is None:
        raise FacegateError("gallery publish needs --signing-key (made by facegate gallery signkey)")
    cfg = Config.load(args.config or DEFAULT_CONFIG)
    key = load_private_key(args.signing_key)
    try:
        blob = Path(args.file).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{args.file}: cannot read the gallery export: {exc.strerror or exc}") from None
    model_id = args.model_id or _export_model_id(args.file) or _door_model_id(cfg)
    payload = seal_snapshot(blob, model_id=model_id, private_key=key, version=args.version)
    header, _ = open_snapshot(payload, public_key=key.public_key(), model_id=model_id)  # what the doors check
    publish_once(cfg.mqtt, cfg.mqtt.gallery_topic, payload, retain=True, timeout=args.timeout)
    out = {"topic": cfg.mqtt.gallery_topic, "version": header.version, "model_id": header.model_id,
           "bytes": header.size, "sha256": header.sha256, "key_id": header.key_id}
    print(json.dumps(out) if args.json else
          f"published gallery snapshot {header.version} ({header.size} bytes, model {header.model_id}) "
          f"to {cfg.mqtt.gallery_topic}, retained, signed by key {header.key_id}")
    return 0


def _export_model_id(path: Path) -> str | None:
    """The one model an encrypted export names in its (authenticated) header, where this build reads them."""
    try:
        from ..gallery.backup import backup_header
    except ImportError:
        return None
    models = backup_header(path).get("model_ids") or []
    if len(models) > 1:
        raise FacegateError(f"{path}: the export mixes models {models}; a door runs one")
    return models[0] if models else None


def _door_model_id(cfg) -> str:
    from ..embed import create_embedder

    emb = create_embedder(cfg.embedder.name, threads=1)
    try:
        return emb.model_id
    finally:
        getattr(emb, "close", lambda: None)()


_RUN = {"publish": cmd_publish, "signkey": cmd_signkey}


def _add_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("publish (several doors, one household)")
    g.add_argument("--signing-key", type=Path, default=None, help="publish: the Ed25519 private key (gallery signkey)")
    g.add_argument("--model-id", default=None, help="publish: the export's model (default: read from the export)")
    g.add_argument("--version", type=int, default=None,
                   help="publish: snapshot version, higher than the last (default: milliseconds since the epoch)")
    g.add_argument("--timeout", type=float, default=10.0, help="publish: seconds to wait for the broker")


def register(sub, add) -> None:
    existing = sub.choices.get("gallery")
    if existing is not None:  # the backup commands are there: add ours to their ACTION
        action = next(a for a in existing._actions if a.dest == "action")
        action.choices = [*action.choices, *ACTIONS]
        theirs = existing.get_default("func")
        existing.set_defaults(func=lambda a: _RUN[a.action](a) if a.action in _RUN else theirs(a))
        existing.description = (existing.description or "") + "; publish FILE, signkey FILE (MQTT)"
        _add_options(existing)
        return
    p = add("gallery", lambda a: _RUN[a.action](a),
            "share one gallery between doors: publish FILE (a signed snapshot over MQTT), signkey FILE",
            gallery=False, model=False)
    p.add_argument("action", choices=list(ACTIONS))
    p.add_argument("file", nargs="?", type=Path, help="the encrypted gallery export (publish) or key file (signkey)")
    p.add_argument("--config", type=Path, default=None,
                   help=f"the config whose [mqtt] section names the broker (default: {DEFAULT_CONFIG})")
    _add_options(p)
