"""README.md promises only what exists: its commands parse, its paths match the unit, it starts with the two commands.

Every ``facegate ...`` command in README.md's shell blocks (and in the docs
it links that belong to this repository) is parsed by the real CLI parser, so
a renamed subcommand or flag fails here, not at the door.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from facegate.edge.cli.main import build_parser

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
#: documents other work in progress adds; the README links them before they land (the lead fixes links at merge)
PENDING_DOCS: set[str] = set()


def _shell_blocks(text: str) -> list[str]:
    return re.findall(r"```(?:sh|bash|console)\n(.*?)```", text, re.S)


def _facegate_commands(text: str) -> list[list[str]]:
    """Each ``facegate`` invocation in the shell blocks (``sudo -u facegate /opt/.../bin/facegate ...`` too),
    as the argv after the program name; shell variables become a placeholder word."""
    out = []
    for block in _shell_blocks(text):
        for line in block.replace("\\\n", " ").splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.commenters, lexer.whitespace_split = "#", True
            tokens, segments = list(lexer), [[]]
            for tok in tokens:  # split at && || ; | but not inside quotes
                segments.append([]) if tok in ("&&", "||", ";", "|", "&") else segments[-1].append(tok)
            for words in segments:
                while words and (words[0] in ("sudo", "nice", "exec") or "=" in words[0] or words[0].startswith("-")):
                    words = words[2:] if words[0] in ("-u", "-n", "-g") else words[1:]
                if words and re.fullmatch(r"(\S*/)?facegate", words[0]) and len(words) > 1:
                    out.append([re.sub(r"\$\{?\w+\}?", "X", w) for w in words[1:]])
    return out


def _prose_subcommands(text: str) -> set[str]:
    """Subcommands named in the prose (`facegate doctor`, `facegate train run`): they must exist."""
    return {span.split()[0] for span in re.findall(r"`facegate ([a-z][^`]*)`", text)}


def _parse(argv: list[str]) -> None:
    parser = build_parser()
    try:
        parser.parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"README command `facegate {' '.join(argv)}` does not parse (exit {exc.code})")


def _subcommands() -> set[str]:
    parser = build_parser()
    (action,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return set(action.choices)


def test_readme_starts_with_the_demo_and_the_exact_ci_test_command() -> None:
    text = README.read_text()
    blocks = _shell_blocks(text)
    assert "facegate demo" in blocks[0] and "requirements/demo.lock" in blocks[0]
    ci = (REPO / ".ci" / "run").read_text()
    test_command = blocks[1].strip()
    assert test_command in ci and "pytest" in test_command
    assert text.index(blocks[1]) < text.index("\n## ")  # both before the first section


@pytest.mark.parametrize("document", ["README.md", "docs/raspberry-pi.md", "docs/model.md"])
def test_every_documented_facegate_command_parses(document: str) -> None:
    commands = _facegate_commands((REPO / document).read_text())
    assert commands
    if document == "README.md":
        assert len(commands) >= 15 and any(c[0] == "run" for c in commands)
    known = _subcommands()
    named = _prose_subcommands((REPO / document).read_text())
    assert named <= known, f"{document} names `facegate {sorted(named - known)}`, which does not exist"
    for argv in commands:
        assert argv[0] in known, f"README documents `facegate {argv[0]}`, which does not exist"
        _parse(argv)


def test_local_links_point_at_files_that_exist() -> None:
    text = README.read_text()
    links = re.findall(r"\]\(((?!https?:|#|mailto:)[^)#\s]+)", text)
    assert links
    missing = [link for link in links if not (REPO / link).exists() and link not in PENDING_DOCS]
    assert not missing, missing


def test_install_paths_agree_with_the_unit() -> None:
    text = README.read_text()
    unit = (REPO / "systemd" / "facegate.service").read_text()
    (doc,) = re.findall(r"^Documentation=file://(\S+)$", unit, re.M)
    # the source tree's place on the Pi, where the README copies it to
    clone = re.search(r"(?:git clone \S+ |rsync -a .*? \S+?:)(/\S+?)/?(?:\s|$)", text, re.M)
    assert clone and doc == f"{clone.group(1)}/README.md"
    (exec_start,) = re.findall(r"^ExecStart=(\S+)", unit, re.M)
    assert exec_start in text or exec_start.rsplit("/bin/", 1)[0] in text
    for rel in ("bookworm", "trixie"):
        assert f"constraints/{rel}.txt" in text or "constraints/$VERSION_CODENAME.txt" in text
        assert (REPO / "constraints" / f"{rel}.txt").is_file()
