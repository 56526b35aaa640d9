"""Nothing lost: an enrolling process killed with SIGKILL at random moments, many times.

Each round starts a process that opens the gallery (creating it, its schema
and its key on the first round) and enrolls one person after another, each
with many templates in one transaction, printing the name once ``enroll``
has returned. The test kills it at a random delay, which lands during
start-up, between enrollments or inside one, then checks the file: SQLite's
integrity check passes, nobody is half-enrolled, and everyone reported
done is there in full.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from facegate.edge.gallery import Gallery

TEMPLATES = 40  # per person: a transaction long enough to be hit inside
ROUNDS = 10

ENROLLER = textwrap.dedent(f"""
    import sys
    import numpy as np
    from facegate.edge.gallery import Gallery
    from facegate.edge.types import Embedding

    path, first = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(first)
    with Gallery(path) as g:
        print("open", flush=True)
        for i in range(first, first + 10_000):
            v = rng.standard_normal(({TEMPLATES}, 128)).astype(np.float32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            g.enroll(f"person {{i}}", [Embedding(x, "model-a") for x in v])
            print(f"done person {{i}}", flush=True)
""")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_enrollment_survives_sigkill_at_random_points(tmp_path):
    path = tmp_path / "gallery.db"
    script = tmp_path / "enroll.py"
    script.write_text(ENROLLER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    rng = random.Random(15)
    done: set[str] = set()
    in_flight: set[str] = set()  # the person being enrolled when the kill came: all or nothing
    opened = 0
    for r in range(ROUNDS):
        first = 1000 * r
        errors = tmp_path / f"stderr-{r}.txt"
        with open(errors, "w") as err_file:
            proc = subprocess.Popen([sys.executable, str(script), str(path), str(first)], env=env,
                                    stdout=subprocess.PIPE, stderr=err_file, text=True)
        out = ""
        # Wait until the gallery is open for most rounds, then kill at a random point.
        if r % 4:
            out = proc.stdout.readline()
            assert out == "open\n", errors.read_text()
            opened += 1
        time.sleep(rng.uniform(0.0, 0.15))
        proc.send_signal(signal.SIGKILL)
        out += proc.stdout.read()  # through the same buffer readline() filled
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL, errors.read_text()
        finished = [ln.removeprefix("done ") for ln in out.splitlines() if ln.startswith("done ")]
        done.update(finished)
        nxt = first + len(finished)
        in_flight.add(f"person {nxt}")

        if not path.exists():
            continue  # killed before it created the file
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            counts = dict(conn.execute(
                "SELECT p.name, count(t.id) FROM people p LEFT JOIN templates t ON t.person_id = p.id GROUP BY p.id"))
        half = {n: c for n, c in counts.items() if c != TEMPLATES}
        assert not half, f"half-enrolled after round {r}: {half}"
        assert done <= set(counts), f"lost: {sorted(done - set(counts))}"
        assert set(counts) <= done | in_flight
    assert opened >= ROUNDS // 2 and len(done) > 0
    with Gallery(path) as g:  # and the gallery still opens, decrypts and matches
        assert len(g) >= len(done)
        names, matrix = g.templates("model-a")
        assert matrix.shape == (len(names), 128)
