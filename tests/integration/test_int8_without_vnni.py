"""The door's INT8 embedder gives the same embedding on an x86 CPU without VNNI.

onnxruntime's u8 x s8 kernels saturate on AVX2-only CPUs (edge/runtime.py); the
shipped INT8 bundle's embedding then fell to a cosine of 0.82 to the same model on a
VNNI CPU. The CPU without VNNI is emulated here by ``qemu-x86_64 -cpu Haswell`` (Debian's
qemu-user; `.ci/run` installs it): numpy and onnxruntime read the emulated CPUID.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slow

SCRIPT = """
import json, sys
import numpy as np
from facegate.edge.detect.mtcnn import MtcnnDetector
from facegate.edge.embed import DEFAULT_BUNDLE, create_embedder
from facegate.edge.eval.samples import sample_portrait
from facegate.edge.runtime import int8_needs_wide_accumulation
faces = [sample_portrait(p) for p in ("astronaut", "grace_hopper")]
detections = [MtcnnDetector(min_face_size=40).detect(img)[:1] for img in faces]
emb = create_embedder(DEFAULT_BUNDLE)
vectors = np.concatenate([emb.embed(img, det) for img, det in zip(faces, detections)])
print(json.dumps({"wide": int8_needs_wide_accumulation(), "vectors": vectors.tolist()}))
"""


def _embed(prefix: list[str]) -> dict:
    out = subprocess.run([*prefix, sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_default_int8_embedder_agrees_between_a_vnni_cpu_and_an_avx2_only_cpu():
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        pytest.skip("qemu-x86_64 (Debian's qemu-user) is not installed")
    here = _embed([])
    haswell = _embed([qemu, "-cpu", "Haswell"])
    assert haswell["wide"] is True  # Haswell has AVX2 and no VNNI: the exact kernels are chosen
    cos = np.sum(np.asarray(here["vectors"]) * np.asarray(haswell["vectors"]), axis=1)
    assert cos.min() > 0.995, cos
