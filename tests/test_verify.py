"""Citation verification, answer types, the planted-error set and `ragline verify`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ragline import Index
from ragline.answer.support import CosineScorer, build_scorer
from ragline.answer.types import (
    Answer,
    CitedSentence,
    ClaimCheck,
    ClaimVerdict,
    InvalidAnswerInput,
    JudgeLabel,
    JudgeVerdict,
    parse_verify_input,
)
from ragline.answer.verify import (
    MemoEmbedder,
    Thresholds,
    abstain_if_unsupported,
    consistency_mismatches,
    match_quote,
    verify_answer,
    verify_claim,
)
from ragline.cli import verify as commands
from ragline.embed.base import Embedder, EmbedKind, Vectors
from ragline.errors import ConfigError, RaglineError
from ragline.evaluate.planted import PlantedError, Split, build_planted_set, paraphrase

TEMPLE = (
    "Shirley Temple Black (April 23, 1928 - February 10, 2014) was an American actress and "
    "diplomat. She was Hollywood's number one box-office draw from 1935 to 1938. As an adult, "
    "she was named United States ambassador to Ghana and to Czechoslovakia."
)
ARCHER = (
    "Meet Corliss Archer, a program from radio's Golden Age, ran from January 7, 1943 to "
    "September 30, 1956. Fewer than 24 episodes are known to exist."
)
SOURCES = {1: TEMPLE, 2: ARCHER}


def check(sentence: str, cited: list[int], embedder: Embedder, **kw: object) -> ClaimCheck:
    texts = {n: SOURCES[n] for n in cited if n in SOURCES}
    return verify_claim(
        sentence,
        texts,
        other_texts=SOURCES,
        cited=cited,
        **kw,  # type: ignore[arg-type]
    )


# ---------------------------------------------------------------- verdicts


def test_verbatim_claim_with_its_true_source_is_supported(embedder: Embedder) -> None:
    result = check(
        "She was Hollywood's number one box-office draw from 1935 to 1938.", [1], embedder
    )
    assert result.verdict is ClaimVerdict.SUPPORTED
    assert result.support_score > 0.8
    assert result.best_source_sentence is not None and "1935" in result.best_source_sentence


def test_wrong_number_is_unsupported_and_named(embedder: Embedder) -> None:
    result = check("Fewer than 42 episodes are known to exist.", [2], embedder)
    assert result.verdict is ClaimVerdict.UNSUPPORTED
    assert result.mismatches == ["number '42' not in source"]


def test_wrong_year_is_unsupported(embedder: Embedder) -> None:
    result = check("She was the top box-office draw from 1935 to 1940.", [1], embedder)
    assert result.verdict is ClaimVerdict.UNSUPPORTED
    assert any("1940" in m for m in result.mismatches)


def test_swapped_name_is_unsupported(embedder: Embedder) -> None:
    result = check("She was named United States ambassador to Ghana and to Hungary.", [1], embedder)
    assert result.verdict is ClaimVerdict.UNSUPPORTED
    assert any("Hungary" in m for m in result.mismatches)


def test_claim_supported_by_another_source_is_misattributed(embedder: Embedder) -> None:
    result = check("Fewer than 24 episodes are known to exist.", [1], embedder)
    assert result.verdict is ClaimVerdict.MISATTRIBUTED
    assert result.supported_by == [2]


def test_unrelated_claim_is_unsupported(embedder: Embedder) -> None:
    result = check("The Eiffel Tower was completed in Paris.", [1], embedder)
    assert result.verdict is ClaimVerdict.UNSUPPORTED
    assert result.flagged


def test_citation_to_missing_source_is_invalid(embedder: Embedder) -> None:
    result = check("Fewer than 24 episodes are known to exist.", [7], embedder)
    assert result.verdict is ClaimVerdict.INVALID_SOURCE
    assert "[7]" in result.reason


def test_one_missing_source_among_valid_ones_is_still_invalid(embedder: Embedder) -> None:
    result = check("Fewer than 24 episodes are known to exist.", [2, 9], embedder)
    assert result.verdict is ClaimVerdict.INVALID_SOURCE
    assert result.support_score > 0.5


def test_sentence_without_citation_says_which_source_would_support_it(
    embedder: Embedder,
) -> None:
    result = check("Fewer than 24 episodes are known to exist.", [], embedder)
    assert result.verdict is ClaimVerdict.NO_CITATION
    assert result.supported_by == [2]


def test_quote_found_verbatim_returns_its_span(embedder: Embedder) -> None:
    quote = "number one box-office draw"
    result = check(
        "She was the number one box-office draw from 1935 to 1938.", [1], embedder, quote=quote
    )
    assert result.quote_match == 1.0
    assert result.quote_source == 1
    assert result.quote_span is not None
    start, end = result.quote_span
    assert TEMPLE[start:end] == quote


def test_fabricated_quote_is_flagged(embedder: Embedder) -> None:
    result = check(
        "She was the number one box-office draw from 1935 to 1938.",
        [1],
        embedder,
        quote="she won three Academy Awards for her dancing",
    )
    assert result.verdict.is_problem
    assert any("quote not found" in m for m in result.mismatches)


def test_match_quote_tolerates_case_spacing_and_small_typos() -> None:
    assert match_quote("UNITED   states ambassador", TEMPLE).score == 1.0
    fuzzy = match_quote("named United Staets ambassador to Ghana", TEMPLE)
    assert fuzzy.score > 0.85
    assert "ambassador to Ghana" in TEMPLE[fuzzy.start : fuzzy.end]


def test_consistency_accepts_dates_written_differently() -> None:
    assert consistency_mismatches("It began in January 1943.", ARCHER) == []
    assert consistency_mismatches("It began on 1943-01-07.", ARCHER) == []
    assert consistency_mismatches("It began on 1943-01-08.", ARCHER) != []


def test_judge_runs_only_when_cheap_checks_pass(embedder: Embedder) -> None:
    calls: list[str] = []

    def judge(claim: str, source: str) -> JudgeVerdict:
        calls.append(claim)
        return JudgeVerdict(label=JudgeLabel.PARTIAL, reason="half")

    ok = check("Fewer than 24 episodes are known to exist.", [2], embedder, judge=judge)
    bad = check("Fewer than 42 episodes are known to exist.", [2], embedder, judge=judge)
    assert ok.verdict is ClaimVerdict.PARTIALLY_SUPPORTED
    assert ok.judge is not None and ok.judge.label is JudgeLabel.PARTIAL
    assert bad.verdict is ClaimVerdict.UNSUPPORTED
    assert calls == ["Fewer than 24 episodes are known to exist."]


def test_unmeasured_judge_verdict_keeps_the_cheap_verdict(embedder: Embedder) -> None:
    def judge(claim: str, source: str) -> JudgeVerdict:
        return JudgeVerdict(label=JudgeLabel.UNMEASURED, raw="garbage")

    result = check("Fewer than 24 episodes are known to exist.", [2], embedder, judge=judge)
    assert result.verdict is ClaimVerdict.SUPPORTED
    assert "unmeasured" in result.reason


def test_verify_answer_checks_every_sentence_in_one_batch(embedder: Embedder) -> None:
    sentences = [
        CitedSentence(text="Fewer than 24 episodes are known to exist.", sources=[2]),
        CitedSentence(text="She was an American actress and diplomat.", sources=[1]),
        CitedSentence(text="It ran until 1960.", sources=[]),
    ]
    counting = CountingEmbedder(embedder)
    checks = verify_answer(sentences, SOURCES, scorer=CosineScorer(counting))
    assert [c.verdict for c in checks] == [
        ClaimVerdict.SUPPORTED,
        ClaimVerdict.SUPPORTED,
        ClaimVerdict.NO_CITATION,
    ]
    assert counting.calls == 1


def test_memo_embedder_embeds_each_text_once(embedder: Embedder) -> None:
    counting = CountingEmbedder(embedder)
    memo = MemoEmbedder(counting)
    first = memo.embed(["a b", "c d"])
    second = memo.embed(["c d", "a b"])
    assert counting.calls == 1
    np.testing.assert_allclose(first[::-1], second)


def test_thresholds_reject_values_out_of_range(embedder: Embedder) -> None:
    with pytest.raises(ConfigError, match="quote"):
        Thresholds(quote=1.5)
    with pytest.raises(ConfigError, match="weight"):
        CosineScorer(embedder, weight=2.0)


def test_strict_mode_turns_flagged_answer_into_abstention(embedder: Embedder) -> None:
    bad = check("Fewer than 42 episodes are known to exist.", [2], embedder)
    answer = Answer(question="q", text="Fewer than 42 episodes [2].", checks=[bad])
    strict = abstain_if_unsupported(answer)
    assert strict.abstained and strict.abstain_reason is not None
    assert "unsupported" in strict.abstain_reason
    assert strict.checks == [bad]


# ---------------------------------------------------------------- verify input


def test_parse_verify_input_accepts_chunk_or_doc_citations() -> None:
    data = {
        "question": "q",
        "answer": "a",
        "citations": [
            {"sentence": "a", "chunk_id": "c1"},
            {"sentence": "b", "doc_id": "d1", "quote": "x"},
        ],
    }
    parsed = parse_verify_input(json.dumps(data))
    assert parsed.citations[1].doc_id == "d1"


def test_malformed_verify_input_names_the_field() -> None:
    data = {
        "question": "q",
        "answer": "a",
        "citations": [
            {"sentence": "a", "chunk_id": "c"},
            {"sentence": "b", "chunk_id": "c"},
            {"chunk_id": "c"},
        ],
    }
    with pytest.raises(InvalidAnswerInput, match=r"citations\[2\]\.sentence: field required"):
        parse_verify_input(data)


def test_citation_without_source_id_is_rejected() -> None:
    with pytest.raises(InvalidAnswerInput, match=r"citations\[0\]: needs chunk_id or doc_id"):
        parse_verify_input({"question": "q", "answer": "a", "citations": [{"sentence": "s"}]})


def test_invalid_json_is_a_ragline_error_with_position() -> None:
    with pytest.raises(RaglineError, match="not valid JSON"):
        parse_verify_input("{not json")


def test_answer_round_trips_through_json() -> None:
    answer = Answer(question="q", text="t", sentences=[CitedSentence(text="t", sources=[1])])
    assert Answer.model_validate_json(answer.to_json()) == answer


# ---------------------------------------------------------------- ragline verify


class CountingEmbedder:
    """The real embedder, counting how often it is called."""

    def __init__(self, inner: Embedder) -> None:
        self.inner, self.calls = inner, 0
        self.model_id, self.dim, self.max_tokens = inner.model_id, inner.dim, inner.max_tokens

    def embed(self, texts: Sequence[str], *, kind: EmbedKind = "document") -> Vectors:
        self.calls += 1
        return self.inner.embed(texts, kind=kind)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.inner.count_tokens(texts)


@pytest.fixture(scope="module")
def source_index(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Index:
    """A real index holding the two source documents, one chunk each."""
    root = tmp_path_factory.mktemp("verify") / "src"
    root.mkdir()
    (root / "temple.txt").write_text(TEMPLE)
    (root / "archer.txt").write_text(ARCHER)
    index = Index(root.parent / "index", embedder=embedder)
    assert index.ingest(root).added == 2
    assert index.get_chunk("src/temple.txt#1") is None
    return index


ANSWER = {
    "question": "Who was Shirley Temple?",
    "answer": "She was an American actress and diplomat. Fewer than 24 episodes exist. "
    "She liked cats.",
    "citations": [
        {"sentence": "She was an American actress and diplomat.", "chunk_id": "src/temple.txt#0"},
        {"sentence": "Fewer than 24 episodes exist.", "doc_id": "src/temple.txt"},
        {"sentence": "Fewer than 24 episodes exist.", "chunk_id": "missing#3"},
    ],
}


def test_verify_input_numbers_sources_and_finds_uncited_sentences(
    embedder: Embedder, source_index: Index
) -> None:
    checks, labels = commands.verify_input(parse_verify_input(ANSWER), source_index)
    assert labels == {
        1: "chunk:src/temple.txt#0", 2: "doc:src/temple.txt", 3: "chunk:missing#3"}
    assert [c.verdict for c in checks] == [
        ClaimVerdict.SUPPORTED,
        ClaimVerdict.INVALID_SOURCE,
        ClaimVerdict.NO_CITATION,
    ]
    assert checks[2].sentence == "She liked cats."


def _cli(index: Index, tmp_path: Path, answer: object) -> tuple[int, str]:
    import typer

    path = tmp_path / "answer.json"
    path.write_text(answer if isinstance(answer, str) else json.dumps(answer))
    app = typer.Typer()
    app.command()(commands.verify_command)
    result = CliRunner().invoke(app, [str(path), "--index", str(index.path), "--json"])
    return result.exit_code, result.output


def test_verify_command_exits_1_when_a_claim_is_flagged(
    source_index: Index, tmp_path: Path
) -> None:
    code, output = _cli(source_index, tmp_path, ANSWER)
    assert code == 1
    report = json.loads(output)
    assert report["flagged"] == 2 and not report["ok"]


def test_verify_command_exits_0_when_all_claims_hold(
    source_index: Index, tmp_path: Path
) -> None:
    good = {
        "question": "q",
        "answer": "She was an American actress and diplomat.",
        "citations": [ANSWER["citations"][0]],
    }  # type: ignore[index]
    code, output = _cli(source_index, tmp_path, good)
    assert code == 0
    assert json.loads(output)["ok"]


def test_verify_command_rejects_malformed_answer_with_exit_2(
    source_index: Index, tmp_path: Path
) -> None:
    code, output = _cli(source_index, tmp_path, {"question": "q", "citations": []})
    assert code == 2
    assert "answer: field required" in output


def test_verify_command_reports_missing_index(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text(json.dumps(ANSWER))
    import typer

    app = typer.Typer()
    app.command()(commands.verify_command)
    result = CliRunner().invoke(app, [str(path), "--index", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "no index at" in result.output


# ---------------------------------------------------------------- planted set


def _tiny_hotpot(path: Path) -> Path:
    rows = []
    for q in range(12):
        contexts = []
        for p in range(4):
            year = 1900 + q * 7 + p
            text = (
                f"Paragraph {p} of topic {q} describes the Station Number{q}x{p} in detail. "
                f"It was opened in {year} by Alice Walker{q} with 2{p}0 seats for visitors. "
                f"In {year + 3}, the town of Oakridge{q}{p} won a regional award for it. "
                f"The museum, which is large, holds {p + 3}5 paintings by painters."
            )
            contexts.append({"title": f"T{q}-{p}", "text": text, "is_supporting": p < 2})
        rows.append(
            {"id": f"q{q}", "question": f"Question {q}?", "answers": ["x"], "contexts": contexts}
        )
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def test_planted_set_is_deterministic_and_splits_share_no_paragraph(tmp_path: Path) -> None:
    data = _tiny_hotpot(tmp_path / "qa.jsonl")
    first = build_planted_set(data, answers_per_split=3, correct_per_answer=2)
    second = build_planted_set(data, answers_per_split=3, correct_per_answer=2)
    assert first == second
    calibration = {s for a in first if a.split is Split.CALIBRATION for s in a.sources}
    evaluation = {s for a in first if a.split is Split.EVALUATION for s in a.sources}
    assert calibration and evaluation and not calibration & evaluation


def test_planted_set_contains_every_error_type(tmp_path: Path) -> None:
    answers = build_planted_set(
        _tiny_hotpot(tmp_path / "qa.jsonl"), answers_per_split=3, correct_per_answer=2
    )
    kinds = {c.error for a in answers for c in a.claims}
    assert kinds == set(PlantedError)


def test_planted_errors_are_flagged_on_the_tiny_set(tmp_path: Path, embedder: Embedder) -> None:
    answers = build_planted_set(
        _tiny_hotpot(tmp_path / "qa.jsonl"), answers_per_split=3, correct_per_answer=2
    )
    for answer in answers:
        checks = verify_answer(
            [c.sentence for c in answer.claims], answer.source_map()
        )
        for claim, result in zip(answer.claims, checks, strict=True):
            if claim.error in (
                PlantedError.WRONG_NUMBER,
                PlantedError.WRONG_DATE,
                PlantedError.NONEXISTENT_SOURCE,
                PlantedError.SWAPPED_ENTITY,
            ):
                assert result.flagged, (claim, result)


def test_paraphrase_changes_wording_but_keeps_facts() -> None:
    import random

    text = "In 1990, the company, which was small, released a film (its first)."
    rewritten = paraphrase(text, random.Random(1))
    assert rewritten is not None and rewritten != text
    assert "1990" in rewritten


# ---------------------------------------------------------------- real embedding model


@pytest.mark.parametrize("scorer", ["model", "cosine"])
def test_verifier_supports_paraphrase_and_rejects_other_topic(scorer: str,
                                                              embedder: Embedder) -> None:
    chosen = build_scorer(scorer, embedder=embedder)
    para = verify_claim(
        "Shirley Temple Black was an American actress and diplomat.", {1: TEMPLE}, scorer=chosen
    )
    off = verify_claim(
        "Meet Corliss Archer ran on radio from 1943 to 1956.",
        {1: TEMPLE},
        other_texts={2: ARCHER},
        scorer=chosen,
    )
    assert para.verdict is ClaimVerdict.SUPPORTED
    assert off.verdict is ClaimVerdict.MISATTRIBUTED


def test_uncited_sentence_is_attributed_only_when_a_source_supports_it(
    embedder: Embedder,
) -> None:
    from ragline.answer.verify import attribute_uncited

    sentences = [
        CitedSentence(text="She was Hollywood's number one box-office draw from 1935 to 1938.",
                      sources=[]),
        CitedSentence(text="She won four Olympic medals in swimming.", sources=[]),
    ]
    checks = verify_answer(sentences, SOURCES)
    cited, rechecked = attribute_uncited(sentences, checks, SOURCES)
    assert rechecked[0].verdict is ClaimVerdict.ATTRIBUTED and cited[0].sources == [1]
    assert rechecked[1].verdict is ClaimVerdict.NO_CITATION and cited[1].sources == []


def test_a_quote_that_does_not_match_reports_no_span(embedder: Embedder) -> None:
    result = check(
        "She was Hollywood's number one box-office draw from 1935 to 1938.", [1], embedder,
        quote="the treaty was signed in Vienna",
    )
    assert result.quote_span is None and result.quote_source is None
    assert any("quote not found" in m for m in result.mismatches)
