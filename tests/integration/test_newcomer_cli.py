"""What a newcomer meets first: --version, help, --debug anywhere, help text on every argument, and refusals
that say what to do (JSON with --json, the threshold `run` refuses caught by `config check` and `doctor`,
a missing camera with the fix, no resident named, no mark for a name nobody has)."""

import argparse
import json

import numpy as np
import pytest

from facegate.edge.cli import EXIT_ERROR, EXIT_OK, build_parser, main
from facegate.edge.errors import FacegateError
from facegate.edge.eval.samples import portrait_path


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_version_names_the_installed_package(capsys):
    from importlib.metadata import version

    code, out, _ = run(capsys, "--version")
    assert code == EXIT_OK and out.strip() == f"facegate {version('facegate')}"


def test_facegate_alone_prints_its_help_and_succeeds(capsys):
    code, out, err = run(capsys)
    assert code == EXIT_OK and err == ""
    assert out.startswith("usage: facegate") and "enroll" in out and "doctor" in out and "--version" in out


def _parsers(parser, path=("facegate",)):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen = set()
            for name, child in action.choices.items():
                if id(child) not in seen:
                    seen.add(id(child))
                    yield from _parsers(child, (*path, name))


def test_every_argument_of_every_command_has_help_text():
    missing = [f"{' '.join(path)} {'/'.join(a.option_strings) or a.dest}"
               for path, parser in _parsers(build_parser()) for a in parser._actions
               if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))
               and a.help != argparse.SUPPRESS and not (a.help or "").strip()]
    assert missing == []


@pytest.mark.parametrize("argv", [["--debug", "audit", "mark", "1", "--wrong"], ["audit", "mark", "1", "--wrong",
                                  "--debug"], ["audit", "--debug", "mark", "1", "--wrong"], ["list", "--debug"],
                                  ["--debug", "list"]])
def test_debug_is_taken_before_or_after_the_command(argv):
    assert build_parser().parse_args(argv).debug is True
    assert build_parser().parse_args([a for a in argv if a != "--debug"]).debug is False


def test_debug_after_the_command_shows_the_traceback(tmp_path):
    with pytest.raises(FacegateError):
        main(["audit", "--gallery", str(tmp_path / "none.db"), "--debug"])


def test_eval_without_data_asks_for_the_lfw_folder_instead_of_guessing_a_checkout_path(capsys, monkeypatch):
    monkeypatch.delenv("FACEGATE_LFW", raising=False)
    code, out, err = run(capsys, "eval", "lfw")
    assert code == EXIT_ERROR and out == ""
    assert err.strip() == ("facegate eval: error: which LFW folder? give --data DIR (it holds pairs.txt and "
                           "lfw-deepfunneled/) or set $FACEGATE_LFW")
    assert "shared" not in build_parser()._subparsers._group_actions[0].choices["eval"].format_help()


def test_eval_takes_the_lfw_folder_from_the_environment(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("FACEGATE_LFW", str(tmp_path / "lfw"))
    code, _, err = run(capsys, "eval", "lfw")
    assert code == EXIT_ERROR and f"{tmp_path / 'lfw'}: LFW not found" in err


@pytest.mark.parametrize("command", ["verify", "identify"])
def test_json_refusals_of_verify_and_identify_are_json_on_stdout(command, capsys, tmp_path):
    gallery = tmp_path / "g.db"
    assert main(["enroll", "eileen", str(portrait_path("astronaut")), "--gallery", str(gallery)]) == 0
    capsys.readouterr()
    who = ["eileen"] if command == "verify" else []
    code, out, err = run(capsys, command, *who, str(tmp_path / "missing.jpg"), "--gallery", str(gallery), "--json")
    assert code == EXIT_ERROR
    answer = json.loads(out)
    assert set(answer) == {"error", "error_type"} and "missing.jpg" in answer["error"]
    assert err.startswith(f"facegate {command}: error: ") and len(err.strip().splitlines()) == 1


def _config(tmp_path, match: str):
    cfg = tmp_path / "facegate.toml"
    cfg.write_text(f'[storage]\ngallery = "{tmp_path / "g.db"}"\n[lock]\ntype = "log"\n[match]\n{match}\n')
    return cfg


def test_config_check_and_doctor_refuse_the_threshold_run_refuses(tmp_path, capsys):
    cfg = _config(tmp_path, "threshold = 1.5")
    code, out, err = run(capsys, "config", "check", str(cfg))
    assert code == EXIT_ERROR and out == ""
    assert "match.threshold = 1.5 is looser than the model's threshold" in err and len(err.splitlines()) == 1
    code, out, _ = run(capsys, "doctor", "--config", str(cfg), "--json", "--no-camera")
    model = next(r for r in map(json.loads, out.splitlines()) if r["name"] == "model")
    assert code == EXIT_ERROR and model["status"] == "fail"
    assert "match.threshold = 1.5" in model["message"] and "threshold" in model["fix"]
    # and `run` refuses the same file, as before
    assert main(["enroll", "eileen", str(portrait_path("astronaut")), "--gallery", str(tmp_path / "g.db")]) == 0
    capsys.readouterr()
    code, _, err = run(capsys, "run", "--config", str(cfg))
    assert code == EXIT_ERROR and "match.threshold = 1.5 is looser" in err


def test_a_safe_threshold_or_an_allowed_one_passes_config_check(tmp_path, capsys):
    assert run(capsys, "config", "check", str(_config(tmp_path, "threshold = 0.5")))[0] == EXIT_OK
    allowed = _config(tmp_path, "threshold = 1.5\nallow_unsafe_threshold = true")
    assert run(capsys, "config", "check", str(allowed))[0] == EXIT_OK
    code, out, _ = run(capsys, "doctor", "--config", str(allowed), "--json", "--no-camera")
    model = next(r for r in map(json.loads, out.splitlines()) if r["name"] == "model")
    assert model["status"] == "warn" and "allow_unsafe_threshold" in model["message"]


def test_enroll_from_a_missing_camera_gives_doctors_fix_without_opencvs_own_lines(tmp_path, capfd):
    from facegate.edge.camera import CAMERA_FIX

    gallery = tmp_path / "g.db"
    cfg = tmp_path / "facegate.toml"
    cfg.write_text(f'[camera]\ntype = "opencv"\ndevice = "9"\n[storage]\ngallery = "{gallery}"\n')
    code = main(["enroll", "bob", "--camera", "--config", str(cfg)])
    err = capfd.readouterr().err
    assert code == EXIT_ERROR
    assert err.strip().splitlines() == [f"facegate enroll: error: opencv:9: cannot open 9; fix: {CAMERA_FIX} "
                                        "(facegate doctor checks it all)"]
    assert "[ WARN" not in err
    assert not gallery.exists()  # nothing written for a session that never started


def test_audit_mark_was_refuses_a_name_nobody_has(tmp_path, capsys):
    from facegate.edge.audit import AuditLog, hold_embedding
    from facegate.edge.gallery import Gallery
    from facegate.edge.types import Decision, Embedding

    db = tmp_path / "g.db"
    v = np.eye(8, dtype=np.float32)
    with Gallery(db) as gallery, AuditLog(db) as log:
        gallery.enroll("alice", [Embedding(v[0], "m")])
        gallery.enroll("carol", [Embedding(v[2], "m")])
        deny = log.record(Decision(timestamp=1.7e9, outcome="deny", name=None, distance=1.2, threshold=0.9,
                                   model_id="m", reason="3 of last 3 judged frames rejected", frames_used=3))
        assert hold_embedding(log, deny, v[1], "m", gallery.template_cipher())
    code, out, err = run(capsys, "audit", "--gallery", str(db), "mark", str(deny), "--wrong", "--was", "bob")
    assert code == EXIT_ERROR and out == ""
    assert err.strip() == ("facegate audit: error: --was bob: nobody of that name is enrolled (facegate list "
                           "shows who is); leave --was out when it was a stranger")
    code, out, _ = run(capsys, "audit", "--gallery", str(db), "mark", str(deny), "--wrong", "--was", "carol")
    assert code == EXIT_OK and "it was carol" in out
