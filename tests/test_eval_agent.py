"""Agent evaluation: grading, pass^k, paired comparison, the registry record, task files, the
CLI's malformed-line error and the calculation task set, against the scripted model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ragline.agent.tools import calculator
from ragline.evaluate.agent_eval import (
    AgentRunner,
    Attempt,
    TaskResult,
    evaluate_agents,
    grade,
    pass_hat_k,
    summarize,
)
from ragline.evaluate.agent_tasks import (
    CALC_TASKS,
    CHECKS,
    AgentTask,
    Check,
    TaskFileError,
    load_tasks,
    parse_task,
)
from ragline.evaluate.registry import RunRegistry
from tests.fakes._http import Reply
from tests.test_agent import ScriptedServer, agent_for, call, last_tool_result, serve


def test_pass_hat_k_is_the_tau_bench_estimate() -> None:
    assert pass_hat_k(4, 4, 4) == 1.0 and pass_hat_k(4, 3, 4) == 0.0
    assert pass_hat_k(4, 2, 1) == 0.5
    assert pass_hat_k(4, 3, 2) == pytest.approx(3 / 6)  # C(3,2)/C(4,2)
    assert pass_hat_k(5, 0, 1) == 0.0
    with pytest.raises(ValueError):
        pass_hat_k(3, 4, 1)


def test_success_and_pass_k_over_known_outcomes() -> None:
    a = AgentTask("a", "q", ("391",))
    b = AgentTask("b", "q", check=Check("number_close", {"value": 2.0, "tol": 0.1}))
    ra = TaskResult(a, [grade(a, Attempt("391", "answered", steps=2, tool_calls=1)),
                        grade(a, Attempt("The answer is 391.", "answered", tool_calls=1,
                                         tool_errors=1)),
                        grade(a, Attempt(None, "max_steps", steps=10))])
    rb = TaskResult(b, [grade(b, Attempt("about 2.05", "answered")) for _ in range(3)])
    assert [g.success for g in ra.attempts] == [True, False, False]
    assert [g.reference_rule for g in ra.attempts] == [True, True, False]  # states it: correct
    assert ra.metrics()["correct"] == pytest.approx(2 / 3)
    assert ra.metrics()["pass^1"] == pytest.approx(1 / 3) and ra.metrics()["pass^2"] == 0.0
    assert rb.metrics()["pass^3"] == 1.0 and "F1" not in rb.metrics()
    s = summarize([ra, rb], 3)
    assert s["success_rate"] == pytest.approx((1 / 3 + 1) / 2)
    assert s["pass^k"]["3"] == pytest.approx(0.5)
    assert s["tool_error_rate"] == pytest.approx(1 / 2)
    assert s["stop_reasons"] == {"answered": 5, "max_steps": 1}
    assert s["F1"] == pytest.approx(ra.metrics()["F1"])


def test_checks_are_named_and_validated_never_code() -> None:
    assert CHECKS["contains_all"]("Paris, in France", items=["paris", "France"])
    assert not Check("number_close", {"value": 10, "tol": 0.5})("it is 11")
    assert Check("number_close", {"value": 1234.5, "tol": 0.01})("total: 1,234.50 USD")
    with pytest.raises(ValueError, match="unknown check"):
        Check("__import__", {})
    with pytest.raises(ValueError, match="bad arguments"):
        Check("number_close", {"vaule": 1})


def test_calculation_task_set_loads_and_its_checks_accept_the_right_answers() -> None:
    tasks = load_tasks(CALC_TASKS)
    assert len(tasks) >= 10 and all(t.tools for t in tasks)
    right = {"calc-01": "847", "calc-02": "338350", "calc-03": "832040", "calc-04": "1229",
             "calc-05": "23229.44", "calc-06": "2.138", "calc-07": "9", "calc-08": "B, 765",
             "calc-09": "46 days", "calc-10": "iiiimppssss", "calc-11": "18446744073709551615"}
    for t in tasks:
        assert grade(t, Attempt(right[t.id], "answered")).success, t.id
        assert not grade(t, Attempt("I do not know", "answered")).success, t.id


def test_malformed_task_lines_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"id": "a", "task": "x", "answer": "1"}\n{"id": "b", "task": "y"}\n')
    with pytest.raises(TaskFileError, match="line 2: give exactly one of"):
        load_tasks(path)
    path.write_text('{"id": "a", "task": "x", "answer": "1"}\n\n{not json\n')
    with pytest.raises(TaskFileError, match="line 3: not valid JSON"):
        load_tasks(path)
    with pytest.raises(ValueError, match="needs 'answer'"):
        parse_task({"id": "j", "task": "t", "check": {"name": "matches",
                                                       "args": {"pattern": "x"}}, "judge": True})


def test_cli_reports_a_malformed_line_with_exit_2_and_no_traceback(tmp_path: Path) -> None:
    from ragline.cli.evaluate import eval_app

    path = tmp_path / "t.jsonl"
    path.write_text('{"id": "a", "task": "x", "answer": "1"}\n{"id": "b", "task": 3, "answer": "2"}\n')
    result = CliRunner().invoke(eval_app, ["agent", "--tasks", str(path)])
    assert result.exit_code == 2
    assert "line 2" in result.output and "Traceback" not in result.output


def _runner(name: str, server: ScriptedServer, tmp_path: Path) -> AgentRunner:
    return AgentRunner(name, lambda task: agent_for(server, [calculator], tmp_path / name))


def test_two_configs_are_compared_paired_and_the_run_is_recorded(
        tmp_path: Path, runs: list[ScriptedServer]) -> None:
    tasks = [AgentTask(f"t{i}", f"What is {i} * 7?", (str(i * 7),)) for i in range(1, 7)]

    def computes(steps: int, body: dict[str, Any]) -> Reply:
        task = next(m["content"] for m in body["messages"] if m["role"] == "user")
        if steps == 0:
            return call("calculator", expression=task.split("is ")[1].rstrip("?"))
        return Reply(text=last_tool_result(body))

    def guesses(steps: int, body: dict[str, Any]) -> Reply:
        return Reply(text="42")

    runs.append(good := serve(computes))
    runs.append(bad := serve(guesses))
    registry = RunRegistry(tmp_path / "runs.sqlite")
    result = evaluate_agents(tasks, [_runner("guess", bad, tmp_path),
                                     _runner("tools", good, tmp_path)],
                             repeats=2, registry=registry, source="mult")
    summary = result.summary()
    assert summary["tools"]["success_rate"] == 1.0 and summary["tools"]["pass^k"]["2"] == 1.0
    assert summary["guess"]["success_rate"] == pytest.approx(1 / 6)  # 6 * 7 = 42
    assert summary["tools"]["steps_mean"] == 2.0 and summary["guess"]["steps_mean"] == 1.0
    assert summary["tools"]["stop_reasons"] == {"answered": 12}
    assert summary["tools"]["tokens"]["input"] > 0
    (comp,) = result.comparisons
    success = comp.metric("success")
    assert (comp.label_a, comp.label_b) == ("guess", "tools")
    assert success.diff == pytest.approx(5 / 6) and success.wins == 5 and success.ties == 1
    assert comp.metric("latency_s").higher_is_better is False
    record = registry.get_run(result.run_id)
    assert record.info.kind == "agent" and record.info.status.value == "complete"
    assert set(record.configs) == {"guess", "tools"}
    registry.close()
    json.dumps(result.to_dict())


def test_hotpotqa_tasks_keep_the_bare_question_for_the_ask_baseline(
        tmp_path: Path, embedder: Any) -> None:
    from ragline.evaluate.agent_eval import AskRunner
    from ragline.evaluate.agent_tasks import hotpotqa_corpus, hotpotqa_tasks, write_tasks
    from ragline.index import Index

    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({
        "id": "h1", "question": "In which city was the Eiffel Tower completed?",
        "answers": ["Paris"],
        "contexts": [{"title": "Eiffel Tower", "text": "The Eiffel Tower was completed in 1889 "
                                                       "in Paris."},
                     {"title": "Kitchen", "text": "The office kitchen closes at 5 pm."}]}) + "\n")
    (task,) = hotpotqa_tasks(qa)
    assert task.question == "In which city was the Eiffel Tower completed?"
    assert task.task.endswith(task.question) and task.task != task.ask_text == task.question
    write_tasks([task], tmp_path / "tasks.jsonl")
    assert load_tasks(tmp_path / "tasks.jsonl") == [task]
    assert AgentTask("x", "bare", ("1",)).ask_text == "bare"
    with pytest.raises(ValueError, match="'question'"):
        parse_task({"id": "q", "task": "t", "answer": "1", "question": ""})

    assert hotpotqa_corpus(qa, tmp_path / "docs") == 2
    index = Index(tmp_path / "ix", embedder=embedder)
    index.ingest(tmp_path / "docs")
    attempt = AskRunner("ask", index, extractive=True, k=1).attempt(task, 0)
    index.close()
    assert attempt.answer is not None and "Paris" in attempt.answer
    assert attempt.stop_reason == "answered" and attempt.tool_calls == 0


def test_judge_tasks_are_graded_by_the_judge_with_its_reliability_reported(tmp_path: Path) -> None:
    from ragline.evaluate.judge import CorrectnessJudge, JudgeMode
    from tests.fakes.openai_server import FakeOpenAIServer
    from tests.fakes.support import RecordingSleep, llm_for

    task = AgentTask("j", "Who played Corliss Archer?", ("Shirley Temple",), judge=True)
    with FakeOpenAIServer() as server:
        judge = CorrectnessJudge(llm_for("openai", server, sleeper=RecordingSleep()),
                                 mode=JudgeMode.TEXT)
        server.push_reply(Reply(text='{"verdict": "correct", "reason": "same person"}'))
        right = grade(task, Attempt("Shirley Temple Black", "answered"), judge)
        server.push_reply(Reply(text='{"verdict": "incorrect", "reason": "another actress"}'))
        wrong = grade(task, Attempt("Judy Garland", "answered"), judge)
        server.push_reply(Reply(text="it is fine"))  # not the format: unmeasured, a failure
        unmeasured = grade(task, Attempt("Shirley Temple", "answered"), judge)
    assert (right.success, wrong.success, unmeasured.success) == (True, False, False)
    assert right.reference_rule is True and wrong.reference_rule is False
    assert grade(task, Attempt(None, "max_steps"), judge).success is False  # no call made
    assert not grade(task, Attempt("Shirley Temple", "answered")).success  # no judge given
    summary = summarize([TaskResult(task, [right, wrong, unmeasured])], 3)
    reliability = summary["judge"]["reliability_vs_reference_rule"]
    assert reliability["n"] == 2 and reliability["accuracy"] == 1.0
