"""The device runtime must import and run with torch absent."""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import importlib, pkgutil, sys

    class BlockTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is blocked in this test")
            return None

    sys.meta_path.insert(0, BlockTorch())
    import facegate.edge
    import facegate.models
    # every edge module imports without torch
    for mod in pkgutil.walk_packages(facegate.edge.__path__, "facegate.edge."):
        importlib.import_module(mod.name)
    # and the whole edge path runs: detect, align, embed, enroll, identify
    from facegate.edge.gallery import Gallery
    from facegate.edge.pipeline import FacePipeline
    from facegate.edge.detect.mtcnn import MtcnnDetector
    from facegate.edge.embed.bundle import BundleEmbedder
    from facegate.edge.recognition import enroll, identify
    from facegate.edge.eval.samples import sample_portrait

    pipe = FacePipeline(MtcnnDetector(min_face_size=40), BundleEmbedder(sys.argv[1]))
    with Gallery(":memory:") as g:
        enroll(pipe, g, "eileen", [sample_portrait("astronaut")])
        j = identify(pipe, g, sample_portrait("astronaut"))
    assert j.match.name == "eileen", j
    assert "torch" not in sys.modules
    print("ok")
    """
)


def test_edge_imports_and_runs_without_torch(tmp_path):
    from ..helpers import tiny_bundle

    bundle = tiny_bundle(tmp_path / "b")
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(bundle)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")
