"""`facegate bench`: an embedder that cannot be built here is skipped with one line; the others are measured."""

import json

from facegate.edge.cli import EXIT_ERROR, EXIT_OK, main

from ..helpers import tiny_bundle


def bench(capsys, *argv):
    code = main(["bench", "--repeats", "1", *argv])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err.strip().splitlines()


def test_the_default_list_measures_what_is_installed_and_skips_the_rest(tmp_path, capsys, monkeypatch):
    tiny = str(tiny_bundle(tmp_path / "tiny"))
    # as a missing extra looks: the reference cannot be built here
    monkeypatch.setattr("facegate.edge.eval.bench.DEFAULT_EMBEDDERS", ("no-such-reference", tiny))
    code, rows, err = bench(capsys, "--json", "--threads", "1,4", "--data", str(tmp_path / "no-lfw"))
    assert code == EXIT_OK
    assert [(r["embedder"], r["threads"]) for r in rows] == [(tiny, 1), (tiny, 4)]
    assert all(r["embed_ms"] > 0 and r["frame_ms"] > 0 for r in rows)
    assert len(err) == 1 and err[0].startswith("facegate bench: skipped no-such-reference: unknown embedder")


def test_a_named_embedder_that_cannot_be_built_is_one_line_each_and_exit_2_after_the_others(tmp_path, capsys):
    tiny = str(tiny_bundle(tmp_path / "tiny"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json")
    code, rows, err = bench(capsys, "--json", "--threads", "1,2", "--embedders", f"{broken},{tiny},no-such",
                            "--data", str(tmp_path / "no-lfw"))
    assert code == EXIT_ERROR
    assert [r["embedder"] for r in rows] == [tiny, tiny]  # measured after the broken one, not stopped by it
    assert [line.split(":")[0] for line in err] == ["facegate bench"] * 2
    assert f"skipped {broken}:" in err[0] and "skipped no-such:" in err[1]
    assert "Traceback" not in "\n".join(err)


def test_nothing_measurable_is_an_error_not_an_empty_success(tmp_path, capsys):
    code, rows, err = bench(capsys, "--embedders", "no-such", "--threads", "1")
    assert code == EXIT_ERROR and rows == []
    assert len(err) == 2 and err[0].startswith("facegate bench: skipped no-such: unknown embedder 'no-such'")
    assert err[1] == "facegate bench: error: no embedder could be measured"


def test_thread_counts_are_checked_before_anything_runs(capsys):
    assert main(["bench", "--threads", "1,0"]) == EXIT_ERROR
    assert "expected a number >= 1, got 0" in capsys.readouterr().err
