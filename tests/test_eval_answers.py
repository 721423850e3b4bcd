"""Answer evaluation: SQuAD-style scores, citation and claim scores, repeats, the command end to
end on a tiny QA set with a real index, repeats never served from the cache, runs compare."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from ragline.answer.types import Answer, Citation, CitedSentence, ClaimCheck, ClaimVerdict
from ragline.cli.eval_answers import eval_answers
from ragline.cli.runs import runs_app
from ragline.errors import DatasetError
from ragline.evaluate.answer_scores import (
    attributed_claims,
    citation_scores,
    cited_doc_ids,
    contains_answer,
    exact_match,
    majority_agreement,
    normalize_answer,
    prediction_text,
    supported_claims,
    token_f1,
)
from ragline.evaluate.answers import (
    AnswerItem,
    CallCost,
    GenerativeAnswerer,
    LabelledAnswer,
    RecordingLedger,
    answer_items,
    evaluate_answers,
    score_sample,
)
from ragline.evaluate.datasets import load_qa_jsonl
from ragline.evaluate.registry import RunRegistry
from ragline.llm import LLM, ResponseCache
from tests.fakes import support
from tests.fakes._http import Reply
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.support import RecordingSleep, llm_for

openai_server = support.openai_server
runner = CliRunner()

# --- SQuAD v1.1 / HotpotQA scores ------------------------------------------------------------


def test_normalisation_lowercases_and_drops_punctuation_and_articles() -> None:
    assert normalize_answer("The  Eiffel-Tower, in Paris!") == "eiffeltower in paris"
    assert normalize_answer("An apple a day") == "apple day"


def test_exact_match_takes_the_max_over_gold_answers() -> None:
    assert exact_match("the Denver Broncos", ["Broncos", "Denver Broncos"]) == 1.0
    assert exact_match("Denver", ["Denver Broncos"]) == 0.0


def test_token_f1_on_the_squad_example() -> None:
    # prediction 3 tokens, gold 2, 2 shared: precision 2/3, recall 1, F1 0.8
    assert token_f1("Denver Broncos won", ["Denver Broncos"]) == pytest.approx(0.8)
    assert token_f1("Carolina Panthers", ["Denver Broncos"]) == 0.0
    assert token_f1("Denver Broncos won", ["Broncos", "Denver Broncos"]) == pytest.approx(0.8)


def test_yes_no_answers_score_only_when_equal() -> None:
    assert token_f1("yes", ["yes"]) == 1.0
    assert token_f1("no", ["yes"]) == 0.0
    assert token_f1("yes they were", ["yes"]) == 0.0  # HotpotQA's rule: gold yes/no needs equality
    assert token_f1("yes", ["the yes men"]) == 0.0


def test_contains_answer_finds_the_gold_tokens_in_a_sentence() -> None:
    text = "She also served as Chief of Protocol of the United States."
    assert contains_answer(text, ["Chief of Protocol"])
    assert not contains_answer(text, ["Chief Justice"])
    assert not contains_answer("a protocol chief", ["Chief of Protocol"])


def test_token_recall_scores_long_form_answers_that_contains_misses() -> None:
    from ragline.evaluate.answer_scores import is_correct, token_recall

    gold = ["The vaccine reduced hospital admissions by half in adults over 65."]
    paraphrase = ("In adults over 65, hospital admissions fell by half after the vaccine "
                  "was introduced.")
    assert not contains_answer(paraphrase, gold)
    assert token_recall(paraphrase, gold) >= 0.8 and is_correct(paraphrase, gold)
    wrong = "The vaccine had no effect on admissions."
    assert token_recall(wrong, gold) < 0.5 and not is_correct(wrong, gold)
    assert token_recall("Paris is the capital.", ["Paris"]) == 1.0
    assert token_recall("No, although yes is tempting.", ["yes"]) == 0.0


def test_contains_answer_needs_yes_or_no_first() -> None:
    assert contains_answer("Yes, both were American.", ["yes"])
    assert not contains_answer("No, although yes is tempting.", ["yes"])


def _answer(text: str, cites: list[tuple[int, str]], *, abstained: bool = False,
            verdicts: tuple[ClaimVerdict, ...] = ()) -> Answer:
    return Answer(
        question="q", text=text, abstained=abstained,
        sentences=[CitedSentence(text=text, sources=[n for n, _ in cites])] if cites else [],
        citations=[Citation(number=n, chunk_id=f"{d}#0", doc_id=d, start=0, end=1)
                   for n, d in cites],
        checks=[ClaimCheck(sentence=text, cited=[1], verdict=v) for v in verdicts],
    )


def test_prediction_drops_citation_markers_and_abstentions_predict_nothing() -> None:
    assert prediction_text(_answer("Paris [1].", [(1, "d1")])) == "Paris."
    assert prediction_text(_answer("I cannot answer.", [], abstained=True)) == ""


def test_cited_documents_are_those_the_sentences_cite() -> None:
    answer = _answer("x [2]", [(2, "d2")]).model_copy(update={"citations": [
        Citation(number=1, chunk_id="a", doc_id="d1", start=0, end=1),
        Citation(number=2, chunk_id="b", doc_id="d2", start=0, end=1)]})
    assert cited_doc_ids(answer) == {"d2"}


def test_citation_precision_and_recall_against_gold_passages() -> None:
    gold = frozenset({"g1", "g2"})
    assert citation_scores(frozenset({"g1", "x"}), gold) == (0.5, 0.5)
    assert citation_scores(frozenset({"g1", "g2"}), gold) == (1.0, 1.0)
    assert citation_scores(frozenset(), gold) == (0.0, 0.0)  # no citation scores 0
    assert citation_scores(frozenset({"g1"}), frozenset()) is None  # no gold: undefined


def test_verifier_attributions_are_not_the_answers_citations() -> None:
    answer = _answer("x [1]", [(1, "d1")]).model_copy(update={
        "citations": [Citation(number=1, chunk_id="a", doc_id="d1", start=0, end=1),
                      Citation(number=2, chunk_id="b", doc_id="d2", start=0, end=1)],
        "checks": [ClaimCheck(sentence="x", cited=[1], verdict=ClaimVerdict.SUPPORTED),
                   ClaimCheck(sentence="y", cited=[2], verdict=ClaimVerdict.ATTRIBUTED)]})
    assert cited_doc_ids(answer) == {"d1"}
    assert supported_claims(answer.checks) == (1, 2)
    assert attributed_claims(answer.checks) == 1


def test_supported_claims_count_partial_support() -> None:
    checks = [ClaimCheck(sentence="s", cited=[1], verdict=v) for v in (
        ClaimVerdict.SUPPORTED, ClaimVerdict.PARTIALLY_SUPPORTED, ClaimVerdict.UNSUPPORTED,
        ClaimVerdict.NO_CITATION)]
    assert supported_claims(checks) == (2, 4)


def test_agreement_is_the_share_of_the_majority_normalised_answer() -> None:
    assert majority_agreement(["Paris", "paris.", "Lyon", ""]) == ("paris", 0.5)
    assert majority_agreement(["", ""]) == ("<abstained>", 1.0)


# --- items and per-question results ---------------------------------------------------------------


def _write_qa(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_items_read_unanswerable_and_label_fields(tmp_path: Path) -> None:
    path = _write_qa(tmp_path / "qa.jsonl", [
        {"id": "a", "question": "q1", "answers": ["x"], "relevant": [],
         "label": {"answer": "x", "correct": True}},
        {"id": "b", "question": "q2", "answers": ["y"], "relevant": [], "unanswerable": True},
        {"id": "c", "question": "q3", "answers": [], "relevant": []},
    ])
    items = answer_items(load_qa_jsonl(path))
    assert items[0].label == LabelledAnswer("x", True)
    assert [i.unanswerable for i in items] == [False, True, True]
    assert len(answer_items(load_qa_jsonl(path), limit=2)) == 2


def test_a_malformed_label_names_the_field_and_line(tmp_path: Path) -> None:
    path = _write_qa(tmp_path / "qa.jsonl", [
        {"id": "a", "question": "q", "answers": ["x"], "label": {"answer": "x"}}])
    with pytest.raises(DatasetError, match=r"qa.jsonl:1: 'label' must be"):
        answer_items(load_qa_jsonl(path))


class Scripted:
    """An answerer that replays answer texts per question, one per sample."""

    def __init__(self, texts: dict[str, list[str]]) -> None:
        self.texts = texts

    def __call__(self, question: str, *, sample: int) -> Answer:
        text = self.texts[question][sample]
        if not text:
            return _answer("I cannot answer this from the documents.", [], abstained=True)
        return _answer(f"{text} [1]", [(1, "g1")], verdicts=(ClaimVerdict.SUPPORTED,))


ITEMS = [
    AnswerItem("q1", "capital?", ("Paris",), ("g1",)),
    AnswerItem("q2", "river?", ("Seine",), ("g1", "g2")),
    AnswerItem("q3", "unknowable?", (), ()),
]


def test_repeats_give_agreement_pass_hat_and_flaky_questions() -> None:
    answerer = Scripted({"capital?": ["Paris", "Paris", "Paris"],
                         "river?": ["Seine", "Loire", "Seine"],
                         "unknowable?": ["", "", "Mars"]})
    run = evaluate_answers(ITEMS, answerer, repeats=3)
    q1, q2, q3 = (q.metrics() for q in run.questions)
    assert (q1["pass^3"], q1["pass@3"], q1["agreement"]) == (1.0, 1.0, 1.0)
    assert (q2["pass^3"], q2["pass@3"]) == (0.0, 1.0)
    assert q2["agreement"] == pytest.approx(2 / 3)
    assert q2["citation_recall"] == 0.5
    assert q3["correct"] == pytest.approx(2 / 3)  # unanswerable: correct = abstained
    assert "citation_precision" not in q3  # no gold passages: undefined, not 0
    summary = run.summary()
    assert [f["id"] for f in summary["consistency"]["flaky"]] == ["q2", "q3"]
    assert summary["accuracy_unanswerable"] == pytest.approx(2 / 3)
    assert summary["accuracy_answerable"] == pytest.approx(5 / 6)
    assert summary["abstention_rate"] == pytest.approx(2 / 9)
    assert summary["supported_claim_rate"] == 1.0


def test_one_sample_has_no_repeat_metrics() -> None:
    run = evaluate_answers(ITEMS[:1], Scripted({"capital?": ["Paris"]}))
    assert set(run.questions[0].metrics()) == {
        "EM", "F1", "token_recall", "correct", "citation_precision", "citation_recall", "supported_claims"}
    assert "consistency" not in run.summary()


def test_sample_cost_comes_from_its_ledger_rows() -> None:
    item = ITEMS[0]
    sample = score_sample(item, _answer("Paris [1]", [(1, "g1")]), 0.5, CallCost(calls=2,
                          cost_usd=None))
    assert sample.em == 1.0 and sample.correct
    assert sample.to_dict()["cost_usd"] is None  # unpriced stays unpriced, not 0


# --- repeats through an LLM never hit the cache ------------------------------------------------


@pytest.fixture()
def fake_pipeline(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Stand-in for `ragline.answer.pipeline.ask` that calls the LLM the way the pipeline does."""
    calls: list[dict[str, Any]] = []

    def ask(index: Any, question: str, *, llm: LLM, temperature: float, **kw: Any) -> Answer:
        done = llm.complete(question, temperature=temperature, purpose="answer")
        calls.append({"temperature": temperature, "cached": done.cached, **kw})
        return _answer(done.text, [(1, "g1")])

    module = types.ModuleType("ragline.answer.pipeline")
    module.ask = ask  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ragline.answer.pipeline", module)
    return calls


@pytest.mark.integration
def test_repeated_samples_are_never_served_from_the_cache(
    openai_server: FakeOpenAIServer, fake_pipeline: list[dict[str, Any]]
) -> None:
    ledger = RecordingLedger()
    llm = llm_for("openai", openai_server, sleeper=RecordingSleep(), ledger=ledger)
    for text in ("Paris", "Lyon", "Paris"):
        openai_server.push_reply(Reply(text=text))
    answerer = GenerativeAnswerer(index=None, llm=llm, temperature=0.0, seed=7,  # type: ignore[arg-type]
                                  repeat=True)
    run = evaluate_answers(ITEMS[:1], answerer, repeats=3, ledger=ledger)
    assert len(openai_server.requests) == 3  # temperature 0, same prompt: still three calls
    assert [r["seed"] for r in openai_server.requests] == [7, 8, 9]
    assert not any(c["cached"] for c in fake_pipeline)
    assert len(ResponseCache()) == 0
    samples = run.questions[0].samples
    assert [s.cost.calls for s in samples] == [1, 1, 1]
    assert sum(s.cost.cache_hits for s in samples) == 0
    assert run.questions[0].metrics()["pass^3"] == 0.0
    assert llm.defaults.repeat is False  # restored after each sample


# --- the command end to end ---------------------------------------------------------------------

FACTS = [
    ("Mount Kilimanjaro", "Mount Kilimanjaro is the highest mountain in Africa, in Tanzania.",
     "Which country is Mount Kilimanjaro in?", "Tanzania"),
    ("Amazon River", "The Amazon River flows through Brazil into the Atlantic Ocean.",
     "Into which ocean does the Amazon River flow?", "Atlantic Ocean"),
    ("Great Barrier Reef", "The Great Barrier Reef lies off the coast of Queensland, Australia.",
     "Off which Australian state does the Great Barrier Reef lie?", "Queensland"),
    ("Sahara", "The Sahara is the largest hot desert and covers much of North Africa.",
     "Which continent's north does the Sahara cover?", "Africa"),
    ("Lake Baikal", "Lake Baikal in Siberia is the deepest lake in the world.",
     "In which region is Lake Baikal?", "Siberia"),
]
FILLER = [("Volcanoes", "Volcanoes erupt lava and ash when magma reaches the surface."),
          ("Honeybees", "Honeybees live in colonies with a single queen.")]


@pytest.fixture()
def qa_file(tmp_path: Path) -> Path:
    rows = []
    for i, (title, text, question, answer) in enumerate(FACTS):
        contexts = [{"title": title, "text": text, "is_supporting": True}] + [
            {"title": t, "text": x, "is_supporting": False} for t, x in FILLER]
        rows.append({"id": f"q{i}", "question": question, "answers": [answer],
                     "contexts": contexts})
    return _write_qa(tmp_path / "tiny.jsonl", rows)


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.command("answers")(eval_answers)
    app.add_typer(runs_app, name="runs")
    return app


@pytest.mark.integration
def test_eval_answers_extractive_end_to_end_and_runs_compare(qa_file: Path) -> None:
    app = _cli()
    first = runner.invoke(app, ["answers", "--dataset", str(qa_file), "--extractive", "--json"])
    assert first.exit_code == 0, first.output
    data = json.loads(first.stdout)
    answers = data["configs"]["default"]["answers"]
    assert answers["questions"] == 5 and answers["judge"] is None
    assert answers["accuracy_answerable"] >= 0.6  # the facts are verbatim in one passage each
    assert answers["citation_recall"] > 0
    assert answers["cost"]["calls"] == 0
    report = qa_file.parent / "answers.html"
    second = runner.invoke(app, ["answers", "--dataset", str(qa_file), "--extractive",
                                 "--limit", "5", "--json", "--report", str(report)])
    assert second.exit_code == 0, second.output
    md = report.with_suffix(".md").read_text()
    assert "false abstentions (answerable)" in md and "| EM | n/a |" in md  # extractive: no EM
    assert answers["EM"] is None and answers["false_abstention_rate"] is not None
    assert report.read_text().startswith("<!")
    id1, id2 = data["run_id"], json.loads(second.stdout)["run_id"]
    with RunRegistry() as registry:
        run = registry.get_run(id1)
        assert run.info.kind == "answers"
        assert set(run.per_query("default")) == {f"q{i}" for i in range(5)}
        assert run.summary is not None
        stored = run.summary["configs"]["default"]["per_question"][0]
        assert stored["samples"][0]["text"]
    compared = runner.invoke(app, ["runs", "compare", id1, id2, "--json"])
    assert compared.exit_code == 0, compared.output
    comp = json.loads(compared.stdout)
    metrics = {m["metric"]: m for m in comp["metrics"]}
    assert {"EM", "F1", "correct", "citation_precision", "citation_recall"} <= set(metrics)
    assert metrics["correct"]["verdict"] == "no detectable difference"  # same system twice


def test_eval_answers_refuses_a_dataset_without_answers(tmp_path: Path) -> None:
    root = tmp_path / "beir"
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text('{"_id": "d1", "text": "x"}\n')
    (root / "queries.jsonl").write_text('{"_id": "q1", "text": "x"}\n')
    (root / "qrels" / "test.tsv").write_text("q1\td1\t1\n")
    result = runner.invoke(_cli(), ["answers", "--dataset", str(root), "--extractive"])
    assert result.exit_code == 2
    assert "no gold answers" in " ".join(result.output.split())


@pytest.mark.integration
def test_eval_answers_with_a_judge_reports_its_reliability_and_self_agreement(
    qa_file: Path, openai_server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    openai_server.push_reply(Reply(text="not json"), Reply(text="still not json"))
    result = runner.invoke(_cli(), [
        "answers", "--dataset", str(qa_file), "--extractive", "--limit", "3",
        "--judge-provider", "openai", "--judge-model", "gpt-4o-mini",
        "--judge-base-url", openai_server.base_url, "--judge-repeats", "2", "--json"])
    assert result.exit_code == 0, result.output
    judge = json.loads(result.stdout)["configs"]["default"]["answers"]["judge"]
    assert judge["prompt_id"] == "judge_correctness.v1"
    assert (judge["measured"], judge["unmeasured"]) == (2, 1)  # first verdict never validated
    assert judge["reliability_vs_reference_rule"]["n"] == 2
    assert judge["self_agreement"] == 1.0
    per_question = json.loads(result.stdout)["configs"]["default"]["per_question"]
    assert per_question[0]["samples"][0]["judge"]["label"] == "unmeasured"
    assert "judge_correct" not in per_question[0]["metrics"]  # never 0 or NaN
    assert len(per_question[1]["judge_repeats"]) == 2


def test_eval_answers_prints_a_table(qa_file: Path) -> None:
    result = runner.invoke(_cli(), ["answers", "--dataset", str(qa_file), "--extractive",
                                    "--limit", "2", "--repeats", "2"])
    assert result.exit_code == 0, result.output
    for label in ("citation precision", "supported-claim rate", "pass^2", "latency p50"):
        assert label in result.stdout


@pytest.mark.integration
def test_repeats_through_the_real_pipeline_never_hit_the_cache(
    qa_file: Path, openai_server: FakeOpenAIServer, embedder: Any
) -> None:
    from ragline.config import RaglineConfig
    from ragline.index import Index

    data = load_qa_jsonl(qa_file)
    index = Index(qa_file.parent / "idx", RaglineConfig(), embedder=embedder)
    index.ingest_documents(data.iter_documents())
    ledger = RecordingLedger()
    llm = llm_for("openai", openai_server, sleeper=RecordingSleep(), ledger=ledger)
    reply = {"sentences": [{"text": "Kilimanjaro is in Tanzania.", "sources": [1],
                            "quote": None}], "abstained": False}
    for _ in range(3):
        openai_server.push_reply(Reply(json_value=reply))
    answerer = GenerativeAnswerer(index, llm, temperature=0.0, seed=3, repeat=True)
    run = evaluate_answers(answer_items(data, limit=1), answerer, repeats=3, ledger=ledger)
    assert len(openai_server.requests) == 3
    assert [r["seed"] for r in openai_server.requests] == [3, 4, 5]
    assert len(ResponseCache()) == 0
    assert all(s.cost.calls == 1 and s.cost.cache_hits == 0 for s in run.questions[0].samples)
    assert run.questions[0].metrics()["pass^3"] == 1.0
