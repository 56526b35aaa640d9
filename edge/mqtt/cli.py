"""``facegate gallery publish`` and ``facegate gallery keygen``: one household, one signed gallery."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import ConfigError

__all__ = ["register"]


def _mqtt_config(args: argparse.Namespace):
    from ..config import Config

    cfg = Config.load(args.config)
    if not cfg.mqtt.host:
        raise ConfigError("mqtt.host: needed to publish")
    return cfg


def cmd_keygen(args: argparse.Namespace) -> int:
    from .snapshot import generate_keypair

    public = generate_keypair(args.key)
    out = {"private_key": str(args.key), "public_key": str(public)}
    print(json.dumps(out) if args.json else
          f"signing key {args.key} (keep it on the publishing machine, mode 0600); "
          f"give every door {public} as [mqtt] gallery_public_key")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    """Sign an exported gallery and leave it retained on the household topic."""
    from .link import publish_once
    from .snapshot import load_private_key, open_snapshot, seal_snapshot

    cfg = _mqtt_config(args)
    key = load_private_key(args.signing_key)
    try:
        blob = Path(args.export).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{args.export}: cannot read the gallery export: {exc.strerror or exc}") from None
    model_id = args.model_id or _model_id(cfg)
    payload = seal_snapshot(blob, model_id=model_id, private_key=key, version=args.version)
    header, _ = open_snapshot(payload, public_key=key.public_key(), model_id=model_id)  # what doors will check
    publish_once(cfg.mqtt, cfg.mqtt.gallery_topic, payload, retain=True, timeout=args.timeout)
    out = {"topic": cfg.mqtt.gallery_topic, "version": header.version, "model_id": header.model_id,
           "bytes": header.size, "sha256": header.sha256, "key_id": header.key_id}
    print(json.dumps(out) if args.json else
          f"published gallery snapshot {header.version} ({header.size} bytes, model {header.model_id}) "
          f"to {cfg.mqtt.gallery_topic}, retained, signed by key {header.key_id}")
    return 0


def _model_id(cfg) -> str:
    from ..pipeline import create_pipeline

    return create_pipeline(cfg).model_id


def register(sub, add) -> None:
    p = add("gallery", lambda a: a.gallery_func(a), "share one gallery between doors (signed snapshots over MQTT)",
            gallery=False, model=False)
    actions = p.add_subparsers(dest="gallery_action", required=True, metavar="ACTION")
    k = actions.add_parser("keygen", help="make the household's Ed25519 signing key and its public half")
    k.add_argument("key", type=Path, help="private key file to create (its public half: KEY.pub)")
    k.set_defaults(gallery_func=cmd_keygen)
    k.add_argument("--json", action="store_true", help="machine-readable output")
    pub = actions.add_parser("publish", help="sign an encrypted gallery export and publish it, retained, "
                                             "to [mqtt] gallery_topic")
    pub.add_argument("export", type=Path, help="the encrypted gallery export (facegate gallery export)")
    pub.add_argument("--signing-key", type=Path, required=True, help="the Ed25519 private key (gallery keygen)")
    pub.add_argument("--model-id", default=None, help="model the export was made with (default: the config's)")
    pub.add_argument("--version", type=int, default=None,
                     help="snapshot version, higher than the last (default: milliseconds since the epoch)")
    pub.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the broker")
    pub.add_argument("--json", action="store_true", help="machine-readable output")
    pub.set_defaults(gallery_func=cmd_publish)
    for q in (k, pub):
        q.add_argument("--config", type=Path, default=Path("/etc/facegate/facegate.toml"),
                       help="the config whose [mqtt] section names the broker")

