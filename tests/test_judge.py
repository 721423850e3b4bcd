"""LLM-as-judge of correctness: strict parsing, unmeasured verdicts, raw output kept, reliability,
self-agreement, and repeated verdicts never served from the cache. Judge replies are scripted on
the fake OpenAI server (real wire format)."""

from __future__ import annotations

import pytest

from ragline.errors import ConfigError
from ragline.evaluate.judge import (
    CorrectnessJudge,
    CorrectnessJudgement,
    CorrectnessLabel,
    JudgeMode,
    cohen_kappa,
    format_reference,
    judge_mean,
    judge_reliability,
    parse_correctness,
    self_agreement,
)
from ragline.llm import Ledger, ResponseCache
from tests.fakes import support
from tests.fakes._http import Reply
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.support import RecordingSleep, llm_for

openai_server = support.openai_server

CORRECT = '{"verdict": "correct", "reason": "same person"}'


def _judge(server: FakeOpenAIServer, mode: JudgeMode = JudgeMode.TEXT) -> CorrectnessJudge:
    return CorrectnessJudge(llm_for("openai", server, sleeper=RecordingSleep()), mode=mode)


def _verdict(label: CorrectnessLabel) -> CorrectnessJudgement:
    return CorrectnessJudgement(label, "", "raw", "judge_correctness.v1", "fake:judge")


# --- strict parsing ---------------------------------------------------------------------------


def test_parse_accepts_the_exact_json_object() -> None:
    assert parse_correctness(CORRECT) == (CorrectnessLabel.CORRECT, "same person")


def test_parse_accepts_a_json_code_fence() -> None:
    text = '```json\n{"verdict": "incorrect", "reason": "other year"}\n```'
    assert parse_correctness(text) == (CorrectnessLabel.INCORRECT, "other year")


@pytest.mark.parametrize("text", [
    "correct",
    "The answer is correct.",
    'Sure! {"verdict": "correct", "reason": "x"}',
    '{"verdict": "right", "reason": "x"}',
    '{"verdict": "correct"}',
    '{"verdict": "correct", "reason": "x", "score": 1}',
    "",
])
def test_parse_marks_anything_else_unmeasured(text: str) -> None:
    label, why = parse_correctness(text)
    assert label is CorrectnessLabel.UNMEASURED
    assert why


def test_reference_joins_several_gold_answers() -> None:
    assert format_reference(["Paris", " paris, France "]) == "Paris | paris, France"


# --- against the fake server --------------------------------------------------------------------


@pytest.mark.integration
def test_text_judge_keeps_prompt_id_and_raw_output(openai_server: FakeOpenAIServer) -> None:
    openai_server.push_reply(Reply(text=CORRECT))
    verdict = _judge(openai_server).judge("Who?", ["Shirley Temple"], "Shirley Temple Black")
    assert verdict.label is CorrectnessLabel.CORRECT
    assert verdict.correct is True
    assert verdict.raw == CORRECT
    assert verdict.prompt_id == "judge_correctness.v1"
    assert verdict.judge_model == "openai:gpt-4o-mini"
    user = openai_server.requests[-1]["messages"][-1]["content"]
    assert "<reference>Shirley Temple</reference>" in user
    assert "<answer>Shirley Temple Black</answer>" in user


@pytest.mark.integration
def test_unparseable_text_verdict_is_unmeasured_never_zero(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.push_reply(Reply(text=CORRECT), Reply(text="I would say it is right."))
    judge = _judge(openai_server)
    verdicts = [judge.judge("Q?", ["A"], "A"), judge.judge("Q?", ["A"], "B")]
    assert verdicts[1].label is CorrectnessLabel.UNMEASURED
    assert verdicts[1].correct is None
    assert verdicts[1].raw == "I would say it is right."
    assert verdicts[1].error
    mean = judge_mean(verdicts)
    assert (mean.mean, mean.measured, mean.unmeasured) == (1.0, 1, 1)


@pytest.mark.integration
def test_structured_judge_sends_the_schema_and_parses(openai_server: FakeOpenAIServer) -> None:
    openai_server.push_reply(Reply(json_value={"verdict": "incorrect", "reason": "1999 not 2001"}))
    verdict = _judge(openai_server, JudgeMode.STRUCTURED).judge("When?", ["2001"], "1999")
    fmt = openai_server.requests[-1]["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["schema"]["properties"]["verdict"]["enum"] == ["correct", "incorrect"]
    assert verdict.label is CorrectnessLabel.INCORRECT
    assert verdict.raw is not None and "1999 not 2001" in verdict.raw


@pytest.mark.integration
def test_structured_judge_that_never_validates_is_unmeasured(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.push_reply(Reply(text="no json here"), Reply(text="still none"))
    verdict = _judge(openai_server, JudgeMode.STRUCTURED).judge("Q?", ["A"], "A")
    assert verdict.label is CorrectnessLabel.UNMEASURED
    assert verdict.error and "CorrectnessReply" in verdict.error
    assert len(openai_server.requests) == 2  # one re-ask, then unmeasured


@pytest.mark.integration
def test_repeated_verdicts_are_never_served_from_the_cache(
    openai_server: FakeOpenAIServer,
) -> None:
    judge = _judge(openai_server)
    for _ in range(3):
        openai_server.push_reply(Reply(text=CORRECT))
        judge.judge("Q?", ["A"], "A", temperature=0.0, repeat=True)
    assert len(openai_server.requests) == 3
    outcomes = [r.outcome for r in Ledger().records() if r.purpose == "judge"]
    assert outcomes == ["ok", "ok", "ok"]
    assert len(ResponseCache()) == 0


@pytest.mark.integration
def test_a_plain_verdict_at_temperature_zero_may_come_from_the_cache(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.push_reply(Reply(text=CORRECT))
    judge = _judge(openai_server)
    first, second = judge.judge("Q?", ["A"], "A"), judge.judge("Q?", ["A"], "A")
    assert len(openai_server.requests) == 1
    assert first.label is second.label is CorrectnessLabel.CORRECT


def test_a_question_without_reference_cannot_be_judged(openai_server: FakeOpenAIServer) -> None:
    with pytest.raises(ConfigError, match="no reference answer"):
        _judge(openai_server).judge("Q?", [], "A")


# --- reliability ----------------------------------------------------------------------------------


def test_kappa_matches_the_textbook_value() -> None:
    # 2x2 table [[20, 5], [10, 15]]: po = 0.7, pe = 0.5, kappa = 0.4
    a = [True] * 25 + [False] * 25
    b = [True] * 20 + [False] * 5 + [True] * 10 + [False] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)


def test_kappa_is_undefined_for_a_single_class() -> None:
    assert cohen_kappa([True, True], [True, True]) is None
    assert cohen_kappa([], []) is None


def test_reliability_leaves_unmeasured_verdicts_out() -> None:
    c, i, u = CorrectnessLabel.CORRECT, CorrectnessLabel.INCORRECT, CorrectnessLabel.UNMEASURED
    verdicts = [_verdict(x) for x in (c, c, i, i, u)]
    result = judge_reliability(verdicts, [True, False, False, False, True], source="test")
    assert (result.n, result.unmeasured) == (4, 1)
    assert result.accuracy == pytest.approx(0.75)
    assert result.kappa == pytest.approx(0.5)


def test_self_agreement_is_the_share_of_the_majority_verdict() -> None:
    c, i, u = CorrectnessLabel.CORRECT, CorrectnessLabel.INCORRECT, CorrectnessLabel.UNMEASURED
    assert self_agreement([_verdict(x) for x in (c, c, i, u)]) == pytest.approx(2 / 3)
    assert self_agreement([_verdict(c)]) is None
