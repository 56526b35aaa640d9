"""What sealed templates cost: enroll, first load (decryption) and identify, sealed vs clear; backup KDF.

Prints one JSON object. The clear-text figures come from the same Gallery
with the sealing swapped for the v2 clear format, so only the encryption differs.

    python benchmarks/gallery_crypto.py [--people 2000] [--per 5] [--dim 128]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np

from facegate.edge.gallery import Gallery, backup
from facegate.edge.gallery.protection import TemplateProtection
from facegate.edge.gallery.schema import decode_embedding, encode_embedding
from facegate.edge.types import Embedding


def clear_text():
    """Patch the gallery to store and read templates in clear (the pre-v3 format)."""
    def seal(self, cipher, vector, template_id, person_id, name, model_id):
        return {"id": template_id, **encode_embedding(vector), "key_id": None}

    def decoder(self, conn, model_id):
        return lambda row: decode_embedding(row[3], row[4])

    return mock.patch.multiple(TemplateProtection, seal=seal, decoder=decoder,
                               cipher_for_write=lambda self, conn: None, on_open=lambda self, *a: None)


def run(folder: Path, people: int, per: int, dim: int, sealed: bool) -> dict:
    rng = np.random.default_rng(0)
    base = rng.standard_normal((people, per, dim)).astype(np.float32)
    base /= np.linalg.norm(base, axis=2, keepdims=True)
    path = folder / f"{'sealed' if sealed else 'clear'}.db"
    ctx = mock.patch.dict({}) if sealed else clear_text()
    with ctx:
        with Gallery(path) as g:
            t0 = time.perf_counter()
            for i in range(people):
                g.enroll(f"p{i:05d}", [Embedding(v, "m") for v in base[i]])
            enroll_s = time.perf_counter() - t0
        with Gallery(path) as g:
            t0 = time.perf_counter()
            g.templates("m")
            load_s = time.perf_counter() - t0
            q = Embedding(base[7, 0], "m")
            t0 = time.perf_counter()
            for _ in range(50):
                assert g.identify(q, 0.5).name == "p00007"
            identify_ms = (time.perf_counter() - t0) / 50 * 1000
    return {"enroll_ms_per_person": round(enroll_s / people * 1000, 3), "first_load_ms": round(load_s * 1000, 1),
            "identify_ms": round(identify_ms, 3), "file_bytes": path.stat().st_size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--people", type=int, default=2000)
    ap.add_argument("--per", type=int, default=5)
    ap.add_argument("--dim", type=int, default=128)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        out = {"people": args.people, "templates": args.people * args.per, "dim": args.dim,
               "sealed": run(folder, args.people, args.per, args.dim, True),
               "clear": run(folder, args.people, args.per, args.dim, False)}
        t0 = time.perf_counter()
        backup._derive("a passphrase of some length", b"\0" * 16, backup.SCRYPT_N, backup.SCRYPT_R, backup.SCRYPT_P)
        out["backup_scrypt_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
