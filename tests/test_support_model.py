"""The trained verifier at run time: evidence chunking, manifest checks, and its judgements on
claims nobody here wrote the model for (the cases that broke the cosine verifier)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ragline.answer.support import ModelScorer, build_scorer
from ragline.answer.support_model import (
    SHIPPED_DIR,
    SupportModel,
    VerifierModelError,
    chunk_spans,
    read_manifest,
)
from ragline.errors import ConfigError


@pytest.fixture(scope="module")
def model() -> SupportModel:
    return SupportModel(threads=1)


@pytest.fixture(scope="module")
def counter(model: SupportModel) -> object:
    return model.counter()


def test_chunks_are_sentence_aligned_and_fit_the_budget(counter: object) -> None:
    text = " ".join(f"Sentence number {i} talks about topic {i} at some length." for i in range(60))
    spans = chunk_spans(text, counter, 64)  # type: ignore[arg-type]
    assert len(spans) > 5
    for start, end in spans:
        piece = text[start:end]
        assert piece.startswith("Sentence") and piece.endswith(".")
        assert len(counter.encode(piece, add_special_tokens=False).ids) <= 64  # type: ignore[attr-defined]
    assert " ".join(text[a:b] for a, b in spans) == text


def test_a_sentence_longer_than_the_window_is_cut_without_losing_text(counter: object) -> None:
    text = "word " * 500
    spans = chunk_spans(text.strip(), counter, 100)  # type: ignore[arg-type]
    assert len(spans) == 5
    assert sum(len(text[a:b].split()) for a, b in spans) == 500


def test_empty_and_huge_inputs_score_without_error(model: SupportModel) -> None:
    scores = model.score([("", "A claim."), ("Some evidence.", ""),
                          ("The cat sat on the mat. " * 5000, "The cat sat on the mat.")])
    assert scores.shape == (3,)
    assert scores[2] > model.threshold


def test_damaged_model_file_names_its_expected_sha256(tmp_path: Path) -> None:
    copy = tmp_path / "verifier"
    shutil.copytree(SHIPPED_DIR, copy)
    expected = json.loads((copy / "manifest.json").read_text())["files"]["model.onnx"]
    with (copy / "model.onnx").open("r+b") as handle:
        handle.seek(1000)
        handle.write(b"garbage")
    with pytest.raises(VerifierModelError, match=f"damaged.*expected {expected}"):
        SupportModel(copy)
    (copy / "model.onnx").unlink()
    with pytest.raises(VerifierModelError, match=f"missing \\(expected sha256 {expected}\\)"):
        SupportModel(copy)


def test_missing_manifest_says_how_to_rebuild(tmp_path: Path) -> None:
    with pytest.raises(VerifierModelError, match="ragline train verifier"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(VerifierModelError, match="not a verifier manifest"):
        read_manifest(tmp_path)


def test_shipped_manifest_records_how_the_model_was_trained() -> None:
    info = read_manifest(SHIPPED_DIR)
    manifest = info.manifest
    assert 0.0 < info.threshold < 1.0
    assert manifest["base_model"]["sha256"]
    assert manifest["training"]["seed"] is not None and manifest["data"]
    assert all(not name.endswith("test.tsv") for name in manifest["data"])  # never a test split
    assert "torch" in manifest["libraries"]


def test_unknown_verifier_name_lists_the_choices() -> None:
    with pytest.raises(ConfigError, match="model, cosine, overlap"):
        build_scorer("nli")


# Claims from the issue report: each broke the cosine verifier.
POLICY = ("Travel policy. Meals are reimbursed up to 60 EUR per day in Europe. Alcohol is not "
          "reimbursable. Expenses above 500 EUR need two approvals. The payments system is "
          "owned by Maria Lopez; Dev Patel owns the search system.")
VOSTOK = ("Lake Vostok is the largest of Antarctica's subglacial lakes. It lies about 4,000 "
          "metres beneath the surface of the East Antarctic Ice Sheet.")


KNOWN_WEAKNESS = pytest.mark.xfail(strict=True, reason="the shipped MiniLM verifier still misses "
                                   "this in a five-sentence source (docs/benchmarks.md, issue 8)")


@pytest.mark.parametrize(("claim", "supported"), [
    ("Alcohol is not reimbursable.", True),
    pytest.param("Alcohol is reimbursable.", False, marks=KNOWN_WEAKNESS),
    ("Maria Lopez owns the payments system.", True),
    pytest.param("Dev Patel owns the payments system.", False, marks=KNOWN_WEAKNESS),
    pytest.param("Expenses above 500 EUR need two approvals.", True, marks=KNOWN_WEAKNESS),
])
def test_model_tells_entailment_from_topical_similarity(claim: str, supported: bool) -> None:
    scorer = ModelScorer()
    assert (scorer.support(claim, [POLICY]).score >= scorer.threshold) is supported


def test_model_tells_a_negated_sentence_from_the_sentence() -> None:
    scorer = ModelScorer()
    source = ["Alcohol is not reimbursable."]
    assert scorer.support("Alcohol is not reimbursable.", source).score >= scorer.threshold
    assert scorer.support("Alcohol is reimbursable.", source).score < scorer.threshold


def test_model_accepts_a_correct_paraphrase_without_a_quote() -> None:
    scorer = ModelScorer()
    claim = "Lake Vostok lies about 4,000 metres beneath the ice surface."
    assert scorer.support(claim, [VOSTOK]).score >= scorer.threshold
