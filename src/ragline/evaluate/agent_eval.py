"""Agent evaluation: run each task N times per configuration, grade every attempt, and report
success, pass^k, steps, tool errors, tokens, cost and latency, with paired comparisons.

- success of an attempt: exact match (SQuAD normalisation) for `answer` tasks, the named check
  for `check` tasks, the LLM judge's verdict for `judge` tasks (an unmeasured verdict counts as a
  failure, and the judge's agreement with the reference rule is reported as its reliability).
  An attempt that ends without an answer (budget, model error) fails. Answer tasks also
  report token F1 and "correct": the answer states a gold answer (EM, contains it, or holds 80%
  of its words), which a sentence-long answer can be while its EM is 0.
- pass^k (τ-bench, Yao et al. 2024): per task with n attempts and c successes, the unbiased
  estimate of the chance that k independent attempts all succeed, C(c, k) / C(n, k); the overall
  pass^k is its mean over tasks, for k = 1..n (pass^1 is the success rate).
- tool-error rate: tool calls with a non-"ok" outcome / all tool calls (over all attempts).
- the paired comparison (configuration B against the first, A) is per task, over its mean over
  repeats: success, F1 (answer tasks), cost and latency, with `compare_paired`.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ragline import __version__
from ragline.evaluate.agent_tasks import AgentTask
from ragline.evaluate.answer_scores import exact_match, is_correct, token_f1
from ragline.evaluate.judge import (
    CorrectnessJudge,
    CorrectnessJudgement,
    judge_mean,
    judge_reliability,
)
from ragline.evaluate.manifest import build_manifest
from ragline.evaluate.registry import QueryResult, RunRegistry
from ragline.evaluate.stats import Comparison, ComparisonError, compare_paired

if TYPE_CHECKING:
    from ragline.agent.loop import Agent
    from ragline.index import Index

COMPARED = ("success", "F1", "correct", "cost_usd", "latency_s")
LOWER_IS_BETTER = frozenset({"cost_usd", "latency_s"})


def pass_hat_k(n: int, c: int, k: int) -> float:
    """τ-bench's pass^k from n attempts with c successes: C(c, k) / C(n, k)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass^k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    return math.comb(c, k) / math.comb(n, k)


@dataclass(frozen=True)
class Attempt:
    """What one run of a task produced, before grading."""

    answer: str | None
    stop_reason: str
    steps: int = 1
    tool_calls: int = 0
    tool_errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    latency_s: float = 0.0
    run_id: str | None = None


class TaskRunner(Protocol):
    """One configuration under evaluation: runs a task once."""

    name: str

    def attempt(self, task: AgentTask, repeat: int) -> Attempt: ...


class AgentRunner:
    """Runs tasks with an agent built fresh per attempt by `build(task)` (so span numbers and
    state never leak between attempts)."""

    def __init__(self, name: str, build: Callable[[AgentTask], Agent]) -> None:
        self.name = name
        self.build = build

    def attempt(self, task: AgentTask, repeat: int) -> Attempt:
        agent = self.build(task)
        started = time.perf_counter()
        result = agent.run(task.task)
        return Attempt(result.answer, result.stop_reason.value, result.steps, result.tool_calls,
                       sum(result.tool_errors.values()), result.usage.input_tokens,
                       result.usage.output_tokens, result.cost_usd,
                       time.perf_counter() - started, result.run_id)


class AskRunner:
    """The single-shot baseline: `Index.ask` on the task's bare question where it has one, else
    on its text (one model call, no tools)."""

    def __init__(self, name: str, index: Index, **options: Any) -> None:
        self.name = name
        self.index = index
        self.options = options

    def attempt(self, task: AgentTask, repeat: int) -> Attempt:
        from ragline.evaluate.answer_scores import prediction_text

        started = time.perf_counter()
        answer = self.index.ask(task.ask_text, **self.options)
        tokens = answer.usage.get("tokens") or {}
        return Attempt(prediction_text(answer) or None,
                       "abstained" if answer.abstained else "answered", 1, 0, 0,
                       int(tokens.get("input_tokens", 0)), int(tokens.get("output_tokens", 0)),
                       answer.usage.get("cost_usd"), time.perf_counter() - started)


@dataclass(frozen=True)
class Graded:
    """An attempt and its grade."""

    attempt: Attempt
    success: bool
    em: float | None = None
    f1: float | None = None
    # Answer tasks: the answer states a gold answer (EM, contains it, or recalls 80% of its
    # words): "correct" in the report, and what a judge's verdicts are checked against.
    reference_rule: bool | None = None
    judgement: CorrectnessJudgement | None = None

    def to_dict(self) -> dict[str, Any]:
        a = self.attempt
        return {"answer": a.answer, "stop_reason": a.stop_reason, "success": self.success,
                "EM": self.em, "F1": self.f1, "correct": self.reference_rule, "steps": a.steps,
                "tool_calls": a.tool_calls,
                "tool_errors": a.tool_errors, "input_tokens": a.input_tokens,
                "output_tokens": a.output_tokens, "cost_usd": a.cost_usd,
                "latency_s": a.latency_s, "run_id": a.run_id,
                "judge": self.judgement.to_dict() if self.judgement else None}


def grade(task: AgentTask, attempt: Attempt, judge: CorrectnessJudge | None = None) -> Graded:
    """Grade one attempt as the module docstring says."""
    text = attempt.answer or ""
    if task.check is not None:
        return Graded(attempt, bool(text) and task.check(text))
    em, f1 = exact_match(text, task.answers), token_f1(text, task.answers)
    rule = bool(text) and is_correct(text, task.answers)
    if not task.judge:
        return Graded(attempt, bool(text) and em == 1.0, em, f1, rule)
    if judge is None or not text:
        return Graded(attempt, False, em, f1, rule)
    verdict = judge.judge(task.task, task.answers, text)
    return Graded(attempt, bool(verdict.correct), em, f1, rule, verdict)


@dataclass
class TaskResult:
    """Every graded attempt of one task under one configuration."""

    task: AgentTask
    attempts: list[Graded] = field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        """Per-task values (means over attempts), as stored in the registry and compared."""
        n, c = len(self.attempts), sum(g.success for g in self.attempts)
        out: dict[str, float] = {"success": c / n}
        out.update({f"pass^{k}": pass_hat_k(n, c, k) for k in range(1, n + 1)})
        runs = [g.attempt for g in self.attempts]
        out["steps"] = float(np.mean([a.steps for a in runs]))
        out["tool_calls"] = float(np.mean([a.tool_calls for a in runs]))
        out["tool_errors"] = float(np.mean([a.tool_errors for a in runs]))
        out["tokens"] = float(np.mean([a.input_tokens + a.output_tokens for a in runs]))
        out["latency_s"] = float(np.mean([a.latency_s for a in runs]))
        if all(a.cost_usd is not None for a in runs):
            out["cost_usd"] = float(np.mean([a.cost_usd or 0.0 for a in runs]))
        if all(g.f1 is not None for g in self.attempts):
            out["F1"] = float(np.mean([g.f1 or 0.0 for g in self.attempts]))
            out["EM"] = float(np.mean([g.em or 0.0 for g in self.attempts]))
            out["correct"] = float(np.mean([bool(g.reference_rule) for g in self.attempts]))
        return out


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


def summarize(results: Sequence[TaskResult], repeats: int) -> dict[str, Any]:
    """Overall figures of one configuration (see the module docstring)."""
    per_task = [r.metrics() for r in results]
    graded = [g for r in results for g in r.attempts]
    runs = [g.attempt for g in graded]
    calls = sum(a.tool_calls for a in runs)
    costs = [a.cost_usd for a in runs]
    f1s = [m["F1"] for m in per_task if "F1" in m]
    latencies = [a.latency_s * 1000 for a in runs]
    out: dict[str, Any] = {
        "tasks": len(results), "repeats": repeats, "attempts": len(runs),
        "success_rate": float(np.mean([m["success"] for m in per_task])),
        "pass^k": {str(k): float(np.mean([m[f"pass^{k}"] for m in per_task]))
                   for k in range(1, repeats + 1)},
        "EM": float(np.mean([m["EM"] for m in per_task if "EM" in m])) if f1s else None,
        "F1": float(np.mean(f1s)) if f1s else None,
        "correct": float(np.mean([m["correct"] for m in per_task if "correct" in m]))
        if f1s else None,
        "steps_mean": float(np.mean([a.steps for a in runs])),
        "tool_calls": calls, "tool_errors": sum(a.tool_errors for a in runs),
        "tool_error_rate": sum(a.tool_errors for a in runs) / calls if calls else 0.0,
        "tokens": {"input": sum(a.input_tokens for a in runs),
                   "output": sum(a.output_tokens for a in runs),
                   "per_attempt": float(np.mean([a.input_tokens + a.output_tokens
                                                 for a in runs]))},
        "cost_usd": None if any(c is None for c in costs) else sum(c or 0.0 for c in costs),
        "cost_usd_per_attempt": None if any(c is None for c in costs)
        else float(np.mean([c or 0.0 for c in costs])),
        "latency_ms": {"p50": _percentile(latencies, 50), "p95": _percentile(latencies, 95)},
        "stop_reasons": dict(Counter(a.stop_reason for a in runs).most_common()),
        "judge": _judge_summary(graded),
    }
    return out


def _judge_summary(graded: Sequence[Graded]) -> dict[str, Any] | None:
    judged = [g for g in graded if g.judgement is not None]
    if not judged:
        return None
    verdicts = [g.judgement for g in judged if g.judgement is not None]
    return {"judge_model": verdicts[0].judge_model, "prompt_id": verdicts[0].prompt_id,
            **judge_mean(verdicts).to_dict(),
            "reliability_vs_reference_rule": judge_reliability(
                verdicts, [bool(g.reference_rule) for g in judged],
                source="reference rule (EM or contains)").to_dict()}


@dataclass
class AgentEvaluation:
    """A recorded agent evaluation: per configuration, per task results, and comparisons."""

    run_id: str
    repeats: int
    results: dict[str, list[TaskResult]]
    comparisons: list[Comparison]
    skipped_comparisons: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {name: summarize(rs, self.repeats) for name, rs in self.results.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "repeats": self.repeats, "configs": self.summary(),
                "tasks": {name: {r.task.id: {**r.metrics(),
                                             "attempts": [g.to_dict() for g in r.attempts]}
                                 for r in rs} for name, rs in self.results.items()},
                "comparisons": [c.to_dict() for c in self.comparisons],
                "skipped_comparisons": self.skipped_comparisons}


def run_config(runner: TaskRunner, tasks: Sequence[AgentTask], repeats: int,
               judge: CorrectnessJudge | None = None,
               say: Callable[[str], None] = lambda _m: None) -> list[TaskResult]:
    """Every task `repeats` times with one configuration, graded."""
    results = []
    for i, task in enumerate(tasks, start=1):
        result = TaskResult(task)
        for r in range(repeats):
            result.attempts.append(grade(task, runner.attempt(task, r), judge))
        say(f"{runner.name}: task {i}/{len(tasks)} {task.id} "
            f"{sum(g.success for g in result.attempts)}/{repeats}")
        results.append(result)
    return results


def compare_configs(results: Mapping[str, Sequence[TaskResult]], *,
                    seed: int = 0) -> tuple[list[Comparison], list[str]]:
    """Each configuration against the first, paired per task."""
    names = list(results)
    per = {n: {r.task.id: r.metrics() for r in results[n]} for n in names}
    comparisons, skipped = [], []
    for name in names[1:]:
        try:
            comparisons.append(compare_paired(per[names[0]], per[name], COMPARED, seed=seed,
                                              lower_is_better=LOWER_IS_BETTER,
                                              label_a=names[0], label_b=name))
        except ComparisonError as exc:
            skipped.append(f"{names[0]} vs {name}: {exc}")
    return comparisons, skipped


def evaluate_agents(
    tasks: Sequence[AgentTask],
    runners: Sequence[TaskRunner],
    *,
    repeats: int = 1,
    judge: CorrectnessJudge | None = None,
    registry: RunRegistry | None = None,
    source: str = "tasks",
    settings: Mapping[str, Any] | None = None,
    seed: int = 0,
    say: Callable[[str], None] = lambda _m: None,
) -> AgentEvaluation:
    """Run every configuration over the tasks, record the run (kind "agent"), compare."""
    from ragline.evaluate.experiment import recorded_run
    from ragline.evaluate.manifest import config_hash

    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    names = [r.name for r in runners]
    if not runners or len(set(names)) != len(names):
        raise ValueError(f"configuration names must be given and differ, got {names}")
    own = registry is None
    registry = registry or RunRegistry()
    try:
        manifest = build_manifest(
            {"kind": "agent", "tasks": source, "repeats": repeats, "configs": names,
             "settings": dict(settings or {}), "ragline": __version__},
            config_hash({"tasks": [t.to_dict() for t in tasks]}), [], seed)
        results: dict[str, list[TaskResult]] = {}
        with recorded_run(registry, "agent", source, manifest) as run_id:
            for runner in runners:
                results[runner.name] = run_config(runner, tasks, repeats, judge, say)
                registry.add_query_results(run_id, runner.name, [
                    QueryResult(r.task.id, r.metrics(), r.metrics()["latency_s"])
                    for r in results[runner.name]])
            registry.finish_run(run_id, {n: summarize(rs, repeats) for n, rs in results.items()})
    finally:
        if own:
            registry.close()
    comparisons, skipped = compare_configs(results, seed=seed)
    return AgentEvaluation(run_id, repeats, results, comparisons, skipped)
