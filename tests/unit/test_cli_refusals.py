"""Property: every refusal of the CLI is exit code 2 and one line on stderr, never a traceback."""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facegate.edge.cli import EXIT_ERROR, main

from ..helpers import tiny_bundle

#: Names a person cannot have: blank, control or invisible characters, or too long.
bad_names = st.one_of(
    st.text(alphabet=" \t\n\r\u3000", min_size=0, max_size=5),
    st.builds(lambda a, c, b: a + c + b, st.text(string.ascii_letters, max_size=5),
              st.sampled_from(["\x00", "\x07", "\u200b", "\u2028", "\x1b"]), st.text(string.ascii_letters, max_size=5)),
    st.text(string.ascii_letters, min_size=65, max_size=80),
)
#: Names that are fine but nobody has them.
unknown_names = st.text(string.ascii_letters + "-' ", min_size=1, max_size=20).filter(lambda s: s.strip())
bad_numbers = st.sampled_from(["0", "-1", "abc", "1.5", "", "1e3x"])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    (root / "junk.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (root / "notadb.db").write_bytes(b"not a database" * 50)
    (root / "adir").mkdir()
    return {"root": root, "bundle": str(tiny_bundle(root / "bundle")), "gallery": str(root / "g.db")}


def refused(capsys, argv) -> None:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == EXIT_ERROR, (argv, code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, (argv, err)


settings_ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@settings_
@given(name=bad_names)
def test_remove_and_verify_refuse_bad_names(capsys, world, name):
    refused(capsys, ["remove", name, "--gallery", world["gallery"]])
    refused(capsys, ["verify", name, str(world["root"] / "junk.jpg"), "--gallery", world["gallery"],
                     "--embedder", world["bundle"]])


@settings_
@given(name=unknown_names)
def test_removing_someone_not_enrolled_is_refused(capsys, world, name):
    refused(capsys, ["remove", name, "--gallery", world["gallery"]])


@settings_
@given(path=st.sampled_from(["missing.jpg", "junk.jpg", "adir", "notadb.db"]),
       command=st.sampled_from(["enroll", "verify", "identify"]), name=unknown_names)
def test_unusable_images_are_refused(capsys, world, path, command, name):
    image = str(world["root"] / path)
    argv = {"enroll": ["enroll", name, image], "verify": ["verify", name, image], "identify": ["identify", image]}
    refused(capsys, argv[command] + ["--gallery", str(world["root"] / "fresh.db"), "--embedder", world["bundle"]])


@settings_
@given(gallery=st.sampled_from(["notadb.db", "adir"]), command=st.sampled_from(["list", "remove"]))
def test_unusable_gallery_files_are_refused(capsys, world, gallery, command):
    argv = ["list"] if command == "list" else ["remove", "alice"]
    refused(capsys, argv + ["--gallery", str(world["root"] / gallery)])


@settings_
@given(flag=st.sampled_from(["--threads", "--min-face"]), value=bad_numbers,
       command=st.sampled_from(["enroll", "verify", "identify"]))
def test_bad_flag_values_are_refused(capsys, world, flag, value, command):
    argv = {"enroll": ["enroll", "x", "a.jpg"], "verify": ["verify", "x", "a.jpg"], "identify": ["identify", "a.jpg"]}
    refused(capsys, argv[command] + [flag, value])


@settings_
@given(path=st.sampled_from(["missing.toml", "adir", "junk.jpg"]))
def test_bad_config_files_are_refused(capsys, world, path):
    refused(capsys, ["config", "check", str(world["root"] / path)])
    refused(capsys, ["list", "--config", str(world["root"] / path)])
