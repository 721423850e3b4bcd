"""The `ragline` command as a user runs it: real processes, real files."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from filelock import FileLock

from tests.test_index import write_corpus


def ragline(*args: str, check: bool = True, **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "ragline.cli", *args], capture_output=True, text=True,
        env={**os.environ, "RAGLINE_EMBED_THREADS": "1"}, timeout=240, **kwargs,  # type: ignore[call-overload]
    )
    if check and result.returncode != 0:
        raise AssertionError(f"ragline {args} failed ({result.returncode}):\n{result.stderr}")
    return result


def test_ingest_json_summary_and_search_json_hits(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    index = str(tmp_path / "ix")
    summary = json.loads(ragline("ingest", str(corpus), "--index", index, "--json").stdout)
    assert summary["added"] == 4 and summary["failed"] == 0
    assert set(summary["seconds"]) >= {"load", "chunk", "embed", "store", "total"}
    out = json.loads(ragline("search", "fourth planet", "--index", index, "--json", "-k", "2").stdout)
    top = out["hits"][0]
    assert top["doc_id"] == "corpus/notes/space.html"
    assert {"chunk_id", "start", "end", "text", "score", "bm25_rank", "dense_rank"} <= set(top)


def test_empty_query_exits_with_a_message_not_a_traceback(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    ragline("ingest", str(corpus), "--index", str(tmp_path / "ix"), "--json")
    result = ragline("search", "  ", "--index", str(tmp_path / "ix"), check=False)
    assert result.returncode == 2
    assert "query is empty" in result.stderr and "Traceback" not in result.stderr


def test_where_option_filters_by_type(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    index = str(tmp_path / "ix")
    ragline("ingest", str(corpus), "--index", index, "--json")
    out = json.loads(ragline("search", "planet", "--index", index, "--where", "type=md",
                             "--json").stdout)
    assert out["hits"] and all(h["type"] == "md" for h in out["hits"])


def test_second_ingest_while_locked_fails_clearly_and_index_survives(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    index = tmp_path / "ix"
    ragline("ingest", str(corpus), "--index", str(index), "--json")
    with FileLock(str(index / "write.lock")):
        result = ragline("ingest", str(corpus), "--index", str(index), check=False)
    assert result.returncode == 2
    assert "another ingest is writing" in result.stderr and "--wait" in result.stderr
    again = json.loads(ragline("ingest", str(corpus), "--index", str(index), "--json").stdout)
    assert again["unchanged"] == 4


def test_two_concurrent_ingests_leave_one_consistent_index(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus", {f"d{i}.txt": f"note {i} about topic {i}" for i in range(60)})
    index = str(tmp_path / "ix")
    cmd = [sys.executable, "-m", "ragline.cli", "ingest", str(corpus), "--index", index, "--json"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outcomes = [p.communicate(timeout=240) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes[0] == 0, outcomes
    if codes[1] != 0:
        assert any("another ingest is writing" in err for _, err in outcomes)
    _assert_consistent(Path(index), expected_docs=60)


@pytest.mark.integration
def test_killed_ingest_resumes_without_duplicates_or_losses(tmp_path: Path) -> None:
    n = 1200
    corpus = write_corpus(tmp_path / "corpus",
                          {f"f{i:04d}.txt": f"document {i} talks about subject {i % 37}" for i in range(n)})
    index = tmp_path / "ix"
    cmd = [sys.executable, "-m", "ragline.cli", "ingest", str(corpus), "--index", str(index), "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "RAGLINE_EMBED_THREADS": "1"})
    deadline = time.monotonic() + 180
    stored = 0
    while time.monotonic() < deadline and proc.poll() is None:
        stored = _count(index, "documents")
        if stored > 0:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 0 < stored < n, "the ingest finished before it could be killed; use more files"
    resumed = json.loads(ragline("ingest", str(corpus), "--index", str(index), "--json").stdout)
    assert resumed["added"] + resumed["unchanged"] == n
    assert resumed["unchanged"] >= stored
    _assert_consistent(index, expected_docs=n)


def _count(index: Path, table: str) -> int:
    db = index / "ragline.sqlite"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def _assert_consistent(index: Path, *, expected_docs: int) -> None:
    with sqlite3.connect(index / "ragline.sqlite") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT count(*) FROM documents").fetchone()[0] == expected_docs
        orphans = conn.execute(
            "SELECT count(*) FROM chunks WHERE doc_id NOT IN (SELECT id FROM documents)"
        ).fetchone()[0]
        assert orphans == 0
        empty = conn.execute(
            "SELECT count(*) FROM documents WHERE id NOT IN (SELECT doc_id FROM chunks)"
        ).fetchone()[0]
        assert empty == 0
        gaps = conn.execute(
            "SELECT count(*) FROM (SELECT doc_id, max(ordinal) + 1 AS n, count(*) AS c"
            " FROM chunks GROUP BY doc_id) WHERE n != c"
        ).fetchone()[0]
        assert gaps == 0


def test_every_documented_command_is_mounted() -> None:
    result = ragline("eval", "--help")
    assert "retrieval" in result.stdout and "answers" in result.stdout
    top = ragline("--help").stdout
    for command in ("ingest", "search", "ask", "chat", "verify", "llm", "ledger", "models",
                    "runs", "datasets", "eval", "tune", "bench", "stats"):
        assert command in top, command


def test_help_shows_config_section_names_literally() -> None:
    # "[llm]" in a help text is the TOML section, not rich markup to swallow
    shown = ragline("adapt", "generate", "--help").stdout
    assert "[llm] provider" in shown and "([llm], [search], ...)" in shown


def test_llm_settings_come_from_the_config_file_and_flags(tmp_path: Path) -> None:
    config = tmp_path / "llm.toml"
    config.write_text('[llm]\nprovider = "openai-compatible"\nbase_url = "http://127.0.0.1:9/v1"\n'
                      "model = \"m\"\ntimeout = 2\nmax_attempts = 1\n")
    result = ragline("llm", "hi", "--config", str(config), check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "127.0.0.1:9" in result.stderr and "--base-url" in result.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[llm]\ntimeoutt = 2\n")
    result = ragline("llm", "hi", "--config", str(bad), check=False)
    assert result.returncode == 2 and "valid keys in [llm]" in result.stderr
    result = ragline("llm", "hi", "--config", str(config), "--timeout", "-1", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_lazy_commands_list_the_help_they_have_once_loaded() -> None:
    """`ragline --help` lists lazily mounted commands by a one-line help kept in cli.py: it must
    say what the command itself says."""
    from ragline.cli import LAZY_COMMANDS, load_lazy_command

    for name, (*_, listed) in LAZY_COMMANDS.items():
        command = load_lazy_command(name)
        assert command.name == name
        assert (command.help or "").strip().split("\n")[0] == listed, name


def test_help_and_version_do_not_import_the_heavy_parts() -> None:
    code = ("import sys; from ragline.cli import main; sys.argv = ['ragline', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "heavy = {'numpy', 'onnxruntime', 'pydantic', 'httpx', 'openai', 'docx', 'pypdfium2',"
            " 'bm25s', 'ragline.index'} & set(sys.modules)\n"
            "print('HEAVY', sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout, out.stdout[-300:]
    assert ragline("--version").stdout.startswith("ragline ")


def test_search_and_ask_name_the_page_of_a_pdf_source(tmp_path: Path) -> None:
    from tests.test_index import _paged_corpus

    docs = _paged_corpus(tmp_path / "docs")
    for chunk_tokens in (16, 256):  # one chunk per page, then one chunk for all five pages
        config = tmp_path / f"c{chunk_tokens}.toml"
        config.write_text(f"[chunking]\nchunk_tokens = {chunk_tokens}\noverlap_tokens = 0\n")
        ix = str(tmp_path / f"ix{chunk_tokens}")
        ragline("ingest", str(docs), "--index", ix, "--config", str(config), "--quiet")
        question = "What were total current assets in fiscal 2019?"
        found = ragline("search", question, "--index", ix, "-k", "1")
        hits = json.loads(ragline("search", question, "--index", ix, "-k", "1",
                                  "--json").stdout)["hits"]
        answered = " ".join(ragline("ask", question, "--index", ix, "--extractive",
                                    "--min-relevance", "0").stdout.split())
        found.stdout = " ".join(found.stdout.split())
        if chunk_tokens == 16:
            assert "report.pdf p. 4" in found.stdout
            assert (hits[0]["page"], hits[0]["pages"]) == (4, [4])
            assert "report.pdf p. 4" in answered
        else:
            assert "report.pdf pp. 1-5" in found.stdout and hits[0]["pages"] == [1, 2, 3, 4, 5]
        assert "(p. 4, chars" in answered or "[1] p. 4" in answered  # the quote's own page


def test_line_progress_does_not_repeat_its_last_line() -> None:
    import io

    from ragline.cli.progress import LineProgress

    out = io.StringIO()
    with LineProgress(out, every=0.0) as progress:
        progress.start(1)
        progress.advance(1, 1, 3)
    assert len(out.getvalue().splitlines()) == 1
