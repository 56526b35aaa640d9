"""``facegate gallery export|import|encrypt|info``: backups and the template key."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path

from ..errors import BackupError, FacegateError

PASSPHRASE_ENV = "FACEGATE_BACKUP_PASSPHRASE"


def _passphrase(args: argparse.Namespace, confirm: bool) -> str:
    """From --passphrase-file, else $FACEGATE_BACKUP_PASSPHRASE, else asked on the terminal."""
    if args.passphrase_file is not None:
        try:
            text = Path(args.passphrase_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise BackupError(f"{args.passphrase_file}: cannot read the passphrase: {exc}") from None
        return text.splitlines()[0] if text.strip() else ""
    if os.environ.get(PASSPHRASE_ENV):
        return os.environ[PASSPHRASE_ENV]
    if not sys.stdin.isatty():
        raise BackupError(f"no passphrase: give --passphrase-file FILE or set {PASSPHRASE_ENV}")
    first = getpass.getpass("backup passphrase: ")
    if confirm and getpass.getpass("again: ") != first:
        raise BackupError("the two passphrases differ")
    return first


def _door_model_id(args: argparse.Namespace) -> str | None:
    """The model the door's config uses (None without --config): a backup of another model is useless."""
    if not getattr(args, "config", None):
        return None
    from ..embed import create_embedder
    from .main import door_config

    cfg = door_config(args)
    emb = create_embedder(cfg.embedder.name, threads=1)
    try:
        return emb.model_id
    finally:
        getattr(emb, "close", lambda: None)()


def cmd_gallery(args: argparse.Namespace) -> int:
    from ..gallery import backup
    from .main import _emit, _gallery, _gallery_path

    if args.action in ("export", "import") and args.file is None:
        raise FacegateError(f"gallery {args.action} needs a FILE")
    if args.action == "export":
        with _gallery(args, readonly=True) as gallery:
            people = gallery.export_people()
        header = backup.write_backup(args.file, people, _passphrase(args, confirm=True), overwrite=args.force)
        _emit(args, {"file": str(args.file), **{k: header[k] for k in ("version", "model_ids", "people", "templates")}},
              f"wrote {args.file}: {header['people']} people, {header['templates']} template(s), "
              f"model {', '.join(header['model_ids']) or '-'} (backup format v{header['version']})")
        return 0
    if args.action == "import":
        header = backup.backup_header(args.file)
        door = _door_model_id(args)
        if door is not None and header.get("model_ids") and header["model_ids"] != [door]:
            raise BackupError(f"{args.file}: templates of model {', '.join(header['model_ids'])}, but the door "
                              f"uses {door}; they cannot be compared, re-enroll instead")
        _, people = backup.read_backup(args.file, _passphrase(args, confirm=False))
        with _gallery(args) as gallery:
            added = gallery.import_people(people, allow_lookalike=args.allow_lookalike)
        _emit(args, {"file": str(args.file), "people": len(people), "templates": added},
              f"imported {len(people)} people, {added} template(s) into {_gallery_path(args)}")
        return 0
    if args.action == "newkey":
        from ..gallery.keys import create_key, key_id

        if args.file is None:
            raise FacegateError("gallery newkey needs a FILE (e.g. /etc/facegate/gallery.key)")
        if args.file.exists():
            raise FacegateError(f"{args.file}: already exists; a gallery key is never replaced")
        key = create_key(args.file)
        _emit(args, {"file": str(args.file), "key_id": key_id(key.key)}, f"wrote {args.file} (key id {key.key_id})")
        return 0
    if args.action == "encrypt":
        with _gallery(args, encrypt_cleartext=True) as gallery:
            key = gallery.key_id
        _emit(args, {"key_id": key}, f"{_gallery_path(args)}: templates sealed with key {key or '- (none yet)'}")
        return 0
    with _gallery(args, readonly=True) as gallery:  # info
        info = {"gallery": str(_gallery_path(args)), "people": len(gallery), "model_ids": sorted(gallery.model_ids()),
                "key_id": gallery.key_id}
    print(json.dumps(info) if args.json else "\n".join(f"{k}: {v}" for k, v in info.items()))
    return 0


def register(sub, add) -> None:
    p = add("gallery", cmd_gallery, "gallery backups and key: export FILE, import FILE, encrypt, info, newkey FILE",
            model=False)
    p.add_argument("action", choices=["export", "import", "encrypt", "info", "newkey"],
                   help="export FILE: encrypted backup; import FILE: restore one; encrypt: seal clear-text "
                        "templates; info: people, models, key; newkey FILE: make a template key")
    p.add_argument("file", nargs="?", type=Path, help="the backup file (export, import) or key file (newkey)")
    p.add_argument("--passphrase-file", type=Path, default=None,
                   help=f"read the backup passphrase from this file's first line (else ${PASSPHRASE_ENV}, else asked)")
    p.add_argument("--force", action="store_true", help="export: replace an existing FILE")
    p.add_argument("--allow-lookalike", action="store_true", help="import: accept names that look like enrolled ones")
