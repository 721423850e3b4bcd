"""Agent task files: loading (a malformed line is an error naming it), the built-in checks, and
the task-set builder from HotpotQA dev-500.

A task file is JSON Lines, one task a line:

    {"id": "t1", "task": "What is 17 * 23?", "answer": "391"}
    {"id": "t2", "task": "...", "check": {"name": "number_close", "args": {"value": 3.14, "tol": 0.01}}}
    {"id": "t3", "task": "...", "answer": ["Chief of Protocol"], "judge": true}

Each task has `id`, `task` and exactly one of `answer` (a string or a list of gold answers:
success is exact match after SQuAD normalisation, and token F1 is reported as HotpotQA does) or
`check` (a named check from `CHECKS` with its arguments: no code from the file is ever run).
`judge: true` (with `answer` as the reference) grades success with the LLM judge instead; the
reference rule (EM or contains) is kept beside it to measure the judge's reliability.
Optional: `tools` (the built-in tools this task's agent gets).
"""

from __future__ import annotations

import inspect
import json
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragline.errors import RaglineError
from ragline.evaluate.answer_scores import normalize_answer

CALC_TASKS = Path(__file__).resolve().parents[3] / "benchmarks" / "tasks" / "calc.jsonl"
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?|-?\.\d+")


class TaskFileError(RaglineError):
    """A task file that cannot be read: the message names the line."""


# --- the built-in checks: pure functions of the answer text ----------------------------------


def _numbers(text: str) -> list[float]:
    out = []
    for raw in _NUMBER.findall(text):
        try:
            out.append(float(raw.replace(",", "")))
        except ValueError:
            continue
    return out


def number_close(answer: str, value: float, tol: float = 1e-6, rel: float = 0.0) -> bool:
    """Some number in the answer is within `tol` (absolute) or `rel` (relative) of `value`."""
    return any(math.isclose(x, value, abs_tol=tol, rel_tol=rel) for x in _numbers(answer))


def contains_all(answer: str, items: Sequence[str]) -> bool:
    """Every item occurs in the answer (after SQuAD normalisation, as whole tokens)."""
    text = f" {normalize_answer(answer)} "
    return all(f" {normalize_answer(i)} " in text for i in items)


def contains_any(answer: str, items: Sequence[str]) -> bool:
    """Some item occurs in the answer (after SQuAD normalisation, as whole tokens)."""
    text = f" {normalize_answer(answer)} "
    return any(f" {normalize_answer(i)} " in text for i in items)


def matches(answer: str, pattern: str) -> bool:
    """The regular expression `pattern` matches somewhere in the answer (case-insensitive)."""
    return re.search(pattern, answer, flags=re.IGNORECASE) is not None


CHECKS: dict[str, Callable[..., bool]] = {
    "number_close": number_close, "contains_all": contains_all,
    "contains_any": contains_any, "matches": matches,
}


@dataclass(frozen=True)
class Check:
    """A named check and its arguments, validated against the check's signature on load."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        fn = CHECKS.get(self.name)
        if fn is None:
            raise ValueError(f"unknown check {self.name!r}; the checks are {sorted(CHECKS)}")
        try:
            inspect.signature(fn).bind("", **self.args)
        except TypeError as exc:
            raise ValueError(f"bad arguments for check {self.name}: {exc}") from exc
        if self.name == "matches":
            re.compile(str(self.args.get("pattern", "")))

    def __call__(self, answer: str) -> bool:
        return bool(CHECKS[self.name](answer, **self.args))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "args": self.args}


# --- tasks -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentTask:
    """One task: what the agent is asked and how its answer is graded."""

    id: str
    task: str
    answers: tuple[str, ...] = ()
    check: Check | None = None
    judge: bool = False
    tools: tuple[str, ...] | None = None
    question: str | None = None
    """The bare question, where `task` wraps one in instructions for the agent: what the
    single-shot `ask` baseline asks (and retrieves with) instead of the whole task text."""

    @property
    def ask_text(self) -> str:
        """What a single-shot `ask` of this task asks."""
        return self.question or self.task

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "task": self.task}
        if self.question is not None:
            out["question"] = self.question
        if self.answers:
            out["answer"] = list(self.answers)
        if self.check is not None:
            out["check"] = self.check.to_dict()
        if self.judge:
            out["judge"] = True
        if self.tools is not None:
            out["tools"] = list(self.tools)
        return out


def parse_task(raw: Any) -> AgentTask:
    """One task from its decoded JSON; ValueError says what is wrong with it."""
    if not isinstance(raw, dict):
        raise ValueError("a task is a JSON object")
    unknown = set(raw) - {"id", "task", "question", "answer", "check", "judge", "tools"}
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)}")
    ident, task = raw.get("id"), raw.get("task")
    if not isinstance(ident, str | int) or str(ident) == "":
        raise ValueError("missing or empty 'id'")
    if not isinstance(task, str) or not task.strip():
        raise ValueError("missing or empty 'task'")
    answer, check, judge = raw.get("answer"), raw.get("check"), raw.get("judge", False)
    if not isinstance(judge, bool):
        raise ValueError("'judge' is true or false")
    if (answer is None) == (check is None):
        raise ValueError("give exactly one of 'answer' or 'check'")
    if judge and answer is None:
        raise ValueError("'judge': true needs 'answer' as the reference")
    answers = (answer,) if isinstance(answer, str) else answer
    if answer is not None and (not isinstance(answers, list | tuple) or not answers
                               or not all(isinstance(a, str) and a for a in answers)):
        raise ValueError("'answer' is a non-empty string or list of strings")
    parsed_check = None
    if check is not None:
        if not isinstance(check, dict) or not isinstance(check.get("name"), str) \
                or not isinstance(check.get("args", {}), dict):
            raise ValueError("'check' is {\"name\": ..., \"args\": {...}}")
        parsed_check = Check(check["name"], dict(check.get("args", {})))
    tools = raw.get("tools")
    if tools is not None and (not isinstance(tools, list)
                              or not all(isinstance(t, str) for t in tools)):
        raise ValueError("'tools' is a list of tool names")
    question = raw.get("question")
    if question is not None and (not isinstance(question, str) or not question.strip()):
        raise ValueError("'question' is a non-empty string")
    return AgentTask(str(ident), task, tuple(answers or ()), parsed_check, judge,
                     None if tools is None else tuple(tools), question)


def load_tasks(path: Path) -> list[AgentTask]:
    """The tasks of a JSON Lines file; a malformed line raises TaskFileError naming it."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise TaskFileError(f"cannot read task file {path}: {exc.strerror or exc}") from exc
    tasks: list[AgentTask] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            task = parse_task(json.loads(line))
        except json.JSONDecodeError as exc:
            raise TaskFileError(f"{path}, line {number}: not valid JSON ({exc.msg})") from exc
        except ValueError as exc:
            raise TaskFileError(f"{path}, line {number}: {exc}") from exc
        if task.id in seen:
            raise TaskFileError(f"{path}, line {number}: duplicate task id {task.id!r}")
        seen.add(task.id)
        tasks.append(task)
    if not tasks:
        raise TaskFileError(f"{path} has no tasks")
    return tasks


# --- the HotpotQA dev-500 task set ---------------------------------------------------------------

HOTPOTQA_PROMPT = ("Answer the question using the search and read tools over the indexed "
                   "Wikipedia paragraphs; reply with a short answer (a few words) and cite "
                   "the spans you used. Question: {question}")


def hotpotqa_tasks(qa_path: Path, limit: int | None = None) -> Iterator[AgentTask]:
    """Multi-hop tasks from a HotpotQA qa.jsonl (id, question, answers): graded by EM/F1."""
    with Path(qa_path).open(encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if limit is not None and i >= limit:
                return
            row = json.loads(line)
            yield AgentTask(str(row["id"]), HOTPOTQA_PROMPT.format(question=row["question"]),
                            tuple(row["answers"]), tools=("search", "read"),
                            question=row["question"])


def hotpotqa_corpus(qa_path: Path, out_dir: Path) -> int:
    """Write the pooled paragraphs of every question (one .txt per title) to ingest as the
    index the tasks search; returns how many documents were written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: set[str] = set()
    with Path(qa_path).open(encoding="utf-8") as fh:
        for line in fh:
            for ctx in json.loads(line).get("contexts", []):
                title = str(ctx["title"])
                safe = re.sub(r"[^\w.-]+", "_", title)[:120] or "untitled"
                if safe in written:
                    continue
                written.add(safe)
                (out_dir / f"{safe}.txt").write_text(f"{title}\n\n{ctx['text']}\n", encoding="utf-8")
    return len(written)


def write_tasks(tasks: Sequence[AgentTask] | Iterator[AgentTask], out: Path) -> int:
    """Write tasks as JSON Lines; returns the count."""
    rows = [json.dumps(t.to_dict(), ensure_ascii=False) for t in tasks]
    out.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return len(rows)
