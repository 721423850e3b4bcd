"""The agent loop: the model calls tools until it answers or a budget ends the run.

    agent = Agent(llm, [calculator, my_tool], budget=Budget(max_steps=10))
    result = agent.run("What is 17 * 23?")
    result.answer, result.stop_reason, result.run_id

A step is one model call plus the tool calls it asked for, checkpointed in `AgentStore`
(see state.py for the transactions); `resume(run_id)` continues a run killed mid-way and
`continue_run(run_id, message)` adds a user turn. Hosted providers use native tool calling; a
provider in JSON-schema tool mode (the local model) always returns exactly one tool call, so
such a run gets a `final_answer` tool to finish with. An answer that cites [n] spans shown by
`search`/`read` is verified with `ragline.answer.verify.verify_answer`, as `ask` is.
"""

from __future__ import annotations

import enum
import json
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ragline.agent.state import AgentStore, CallRow, CallStatus, RunRecord
from ragline.agent.tools import (
    AgentTool,
    Outcome,
    Span,
    SpanRegistry,
    ToolResult,
    as_agent_tools,
    check_call,
    execute,
)
from ragline.errors import RaglineError
from ragline.llm.errors import ProviderError
from ragline.llm.tools import ToolFunction
from ragline.llm.types import Message, Role, ToolCall, Usage

if TYPE_CHECKING:
    from ragline.answer.support import SupportScorer
    from ragline.answer.types import ClaimCheck
    from ragline.llm.client import LLM

DEFAULT_SYSTEM = (
    "You are an agent that completes the user's task by calling tools. Call one or more tools "
    "when you need information or computation; when you have the answer, reply with it as plain "
    "text (no tool call). To find information in the documents, call search first; read only "
    "takes a doc_id that a search result returned. When you use spans from search or read, cite them with their source "
    "number in brackets, like [1], at the end of the sentence they support."
)
FINAL_ANSWER = "final_answer"
ELIDED = ("[elided to fit the model's context: a tool result of {chars} characters; its spans "
          "keep their numbers, and calling the tool again shows it]")


class StopReason(enum.StrEnum):
    """Why a run (or one turn of it) ended."""

    ANSWERED = "answered"
    MAX_STEPS = "max_steps"
    MAX_TIME = "max_time"
    MAX_COST = "max_cost"
    REPEATED_CALL = "repeated_call"
    MODEL_ERROR = "model_error"


@dataclass(frozen=True)
class Budget:
    """Limits of one turn: model calls, wall seconds (of this process's work on it), USD, and
    how many times in a row the same tool calls may be asked for before the run is stopped."""

    max_steps: int = 20
    max_seconds: float = 600.0
    max_cost_usd: float | None = None
    max_repeats: int = 3
    reply_tokens: int = 512  # kept free for the reply when fitting the conversation to the window

    def __post_init__(self) -> None:
        if self.max_steps < 1 or self.max_seconds <= 0 or self.max_repeats < 2:
            raise ValueError("Budget: max_steps >= 1, max_seconds > 0 and max_repeats >= 2")


@dataclass
class AgentResult:
    """The outcome of a run (or its latest turn) and its trace in the store."""

    run_id: str
    answer: str | None
    stop_reason: StopReason
    steps: int
    tool_calls: int
    tool_errors: dict[str, int]
    usage: Usage
    cost_usd: float | None
    citations: list[Span] = field(default_factory=list)
    checks: list[ClaimCheck] = field(default_factory=list)
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "answer": self.answer,
                "stop_reason": self.stop_reason.value, "steps": self.steps,
                "tool_calls": self.tool_calls, "tool_errors": self.tool_errors,
                "usage": self.usage.to_dict(), "cost_usd": self.cost_usd,
                "citations": [s.to_dict() for s in self.citations],
                "checks": [c.model_dump(mode="json") for c in self.checks],
                "detail": self.detail}


class Agent:
    """A model, its tools, a budget and a checkpoint store. See the module docstring."""

    def __init__(
        self,
        llm: LLM,
        tools: Iterable[AgentTool | ToolFunction],
        *,
        store: AgentStore | None = None,
        budget: Budget = Budget(),
        system: str = DEFAULT_SYSTEM,
        registry: SpanRegistry | None = None,
        verify: bool = True,
        scorer: SupportScorer | None = None,
        final_answer_tool: bool | None = None,
        config: dict[str, Any] | None = None,
        context_tokens: int | None = None,
    ) -> None:
        self.llm = llm
        # What one request may hold: the model's window where the provider knows it.
        self.context_tokens = context_tokens if context_tokens is not None else llm.context_window
        self._overhead = 0  # tokens the server's prompt held beyond the counted messages
        self.tools = as_agent_tools(tools)
        self.store = store or AgentStore()
        self.budget = budget
        self.system = system
        self.registry = registry or SpanRegistry()
        self.verify = verify
        self.scorer = scorer
        self.config = config or {}
        schema_mode = _schema_tool_mode(llm) if final_answer_tool is None else final_answer_tool
        if schema_mode:
            self.tools[FINAL_ANSWER] = AgentTool(_final_answer, name=FINAL_ANSWER)

    # --- public ------------------------------------------------------------------------

    def run(self, task: str) -> AgentResult:
        """Start a run on `task` and drive it until it answers or a budget ends it."""
        run_id = self.store.create_run(task, {**self.config, "tools": sorted(self.tools)})
        self.store.add_user_message(run_id, 0, task)
        return self._drive(run_id)

    def resume(self, run_id: str) -> AgentResult:
        """Continue a run from its last completed step (after a crash or kill -9)."""
        return self._drive(run_id)

    def continue_run(self, run_id: str, message: str) -> AgentResult:
        """A follow-up user turn in the same conversation."""
        record = self.store.load(run_id)
        self.store.add_user_message(run_id, len(record.steps), message)
        return self._drive(run_id)

    # --- the loop ----------------------------------------------------------------------

    def _drive(self, run_id: str) -> AgentResult:
        started = time.monotonic()
        record = self.store.load(run_id)
        self._relearn_spans(record)
        messages = record.conversation
        turn_start = _turn_start(record)
        step = len(record.steps)
        if record.steps and record.steps[-1].status == "planned":  # killed while running tools
            stop = self._finish_step(run_id, step - 1, messages, record)
            if stop is not None:
                return self._end(run_id, *stop)
        while True:
            record = self.store.load(run_id)
            reason = self._over_budget(record, turn_start, started)
            if reason is not None:
                return self._end(run_id, reason, None, f"budget: {reason.value}")
            try:
                prompt, counted = self._fitted([Message.system(self.system), *messages])
                completion = self.llm.complete(
                    prompt, tools=[t.spec for t in self.tools.values()], purpose="agent")
            except ProviderError as exc:
                return self._end(run_id, StopReason.MODEL_ERROR, None, str(exc))
            if counted is not None and completion.usage.input_tokens:
                # What the chat template and the tool definitions add to the counted messages,
                # as the server reports it: the next fit counts it in.
                self._overhead = max(self._overhead, completion.usage.input_tokens - counted)
            reply = Message.assistant(completion.text, _unique_ids(completion.tool_calls, step))
            self.store.plan_step(run_id, step, reply, completion.usage.to_dict(),
                                 completion.cost_usd)
            messages.append(reply)
            if not reply.tool_calls:
                return self._end(run_id, StopReason.ANSWERED, completion.text, "")
            stop = self._finish_step(run_id, step, messages, self.store.load(run_id))
            if stop is not None:
                return self._end(run_id, *stop)
            step += 1

    def _fitted(self, prompt: list[Message]) -> tuple[list[Message], int | None]:
        """The prompt as sent, and its counted tokens (None when not counted): when it would
        not fit the model's window (less the reply's share and the template overhead the last
        reply showed), the oldest tool results are elided, one at a time, until it does; the
        latest message is always whole, and the stored conversation keeps every result in full.
        A prompt that still does not fit is sent as is, and the provider's error ends the run."""
        if self.context_tokens is None:
            return prompt, None
        limit = self.context_tokens - self.budget.reply_tokens - self._overhead
        tools = Message.system(json.dumps([[t.spec.name, t.spec.description, t.spec.parameters]
                                           for t in self.tools.values()]))  # their share
        fitted = list(prompt)

        def count() -> int:
            return self.llm.count_prompt_tokens([*fitted, tools])

        counted = count()
        for i, message in enumerate(fitted[:-1]):
            if counted <= limit:
                break
            if message.role is Role.TOOL and len(message.content) > len(ELIDED):
                fitted[i] = Message.tool(message.tool_call_id or "", ELIDED.format(
                    chars=len(message.content)))
                counted = count()
        return fitted, counted

    def _finish_step(self, run_id: str, step: int, messages: list[Message],
                     record: RunRecord) -> tuple[StopReason, str | None, str] | None:
        """Run (or, on resume, complete) the tool calls of `step`; a stop, if the step ends it."""
        reply = messages[-1]
        repeated = _repeats(messages, self.budget.max_repeats)
        done = {c.idx: c for c in record.calls if c.step == step}
        results: list[Message] = []
        answer: str | None = None
        for idx, call in enumerate(reply.tool_calls):
            if repeated:
                result = ToolResult(Outcome.REPEATED, "not run: the same calls were asked "
                                    f"for {self.budget.max_repeats} times in a row")
                self.store.call_done(run_id, step, idx, call, False, result.outcome.value,
                                     result.content, 0.0)
            else:
                result = self._call(run_id, step, idx, call, done.get(idx))
            if call.name == FINAL_ANSWER and result.outcome is Outcome.OK:
                answer = str(call.arguments.get("answer", ""))
            results.append(Message.tool(call.id, result.content))
        self.store.finish_step(run_id, step, results)
        messages.extend(results)
        if repeated:
            return StopReason.REPEATED_CALL, None, f"{reply.tool_calls[0].name} repeated"
        if answer is not None:
            return StopReason.ANSWERED, answer, ""
        return None

    def _call(self, run_id: str, step: int, idx: int, call: ToolCall,
              row: CallRow | None) -> ToolResult:
        """One call, exactly once: a recorded result is reused, a started side effect is not
        re-run (the model is told it was interrupted)."""
        if row is not None and row.status is CallStatus.DONE:
            return ToolResult(Outcome(row.outcome or Outcome.OK), row.result or "")
        tool = self.tools.get(call.name)
        side_effects = tool is not None and tool.side_effects
        if row is not None and row.status is CallStatus.STARTED:
            result = ToolResult(Outcome.INTERRUPTED, f"error: the call of {call.name} was "
                                "interrupted by a crash after it started; it was not run again "
                                "and may or may not have taken effect")
        else:
            result = check_call(call, self.tools) or self._execute(run_id, step, idx, call)
        self.store.call_done(run_id, step, idx, call, side_effects, result.outcome.value,
                             result.content, result.seconds)
        if call.name in ("search", "read") and result.outcome is Outcome.OK:
            self.registry.absorb(result.content)
        return result

    def _execute(self, run_id: str, step: int, idx: int, call: ToolCall) -> ToolResult:
        tool = self.tools[call.name]
        if tool.side_effects:
            self.store.call_started(run_id, step, idx, call, True)
        return execute(call, tool)

    def _over_budget(self, record: RunRecord, turn_start: int,
                     started: float) -> StopReason | None:
        turn = [s for s in record.steps if s.step >= turn_start]
        if len(turn) >= self.budget.max_steps:
            return StopReason.MAX_STEPS
        if time.monotonic() - started >= self.budget.max_seconds:
            return StopReason.MAX_TIME
        cost = sum(s.cost_usd or 0.0 for s in turn)
        if self.budget.max_cost_usd is not None and cost >= self.budget.max_cost_usd:
            return StopReason.MAX_COST
        return None

    def _relearn_spans(self, record: RunRecord) -> None:
        for call in record.calls:
            if call.name in ("search", "read") and call.outcome == Outcome.OK.value:
                self.registry.absorb(call.result or "")

    # --- the end of a turn -----------------------------------------------------------

    def _end(self, run_id: str, reason: StopReason, answer: str | None,
             detail: str) -> AgentResult:
        citations, checks = self._verified(answer)
        self.store.finish_run(run_id, reason.value, answer,
                              citations=[span.to_dict() for span in citations],
                              checks=[c.model_dump(mode="json") for c in checks])
        record = self.store.load(run_id)
        usage = Usage()
        for s in record.steps:
            usage = usage + Usage(**s.usage)
        costs = [s.cost_usd for s in record.steps]
        errors = Counter(c.outcome for c in record.calls if c.outcome != Outcome.OK.value)
        return AgentResult(
            run_id, answer, reason, len(record.steps), len(record.calls),
            {str(k): v for k, v in errors.items()}, usage,
            None if any(c is None for c in costs) else sum(c or 0.0 for c in costs),
            citations, checks, detail)

    def _verified(self, answer: str | None) -> tuple[list[Span], list[ClaimCheck]]:
        """The spans the answer cites and, when it cites any, the verifier's check per sentence."""
        if not answer or not self.registry.spans:
            return [], []
        from ragline.answer.claims import split_sentences
        from ragline.answer.types import CitedSentence

        sentences = [CitedSentence(text=s.text, sources=list(s.citations))
                     for s in split_sentences(answer)]
        cited = sorted({n for s in sentences for n in s.sources if n in self.registry.spans})
        if not cited or not self.verify:
            return [self.registry.spans[n] for n in cited], []
        from ragline.answer.verify import verify_answer

        sources = {n: span.text for n, span in self.registry.spans.items()}
        checks = verify_answer(sentences, sources, scorer=self.scorer)
        return [self.registry.spans[n] for n in cited], checks


def _final_answer(answer: str) -> str:
    """Give the final answer to the task and end the run.

    Args:
        answer: The answer, citing spans as [n].
    """
    return "answer recorded"


def _schema_tool_mode(llm: LLM) -> bool:
    """True for a provider that turns tools into a JSON schema (every reply is a tool call)."""
    from ragline.llm.providers.openai_compatible import ToolMode

    if llm.provider_name == "local":
        return True
    provider = llm._provider(llm.provider_name)
    return getattr(provider, "tool_mode", None) is ToolMode.SCHEMA


def _unique_ids(calls: Sequence[ToolCall], step: int) -> tuple[ToolCall, ...]:
    """Tool-call ids as the provider gave them, or step-scoped ones where it gave none/repeats."""
    seen: set[str] = set()
    out = []
    for i, call in enumerate(calls):
        ident = call.id if call.id and call.id not in seen else f"s{step}_c{i}"
        seen.add(ident)
        out.append(ToolCall(ident, call.name, call.arguments))
    return tuple(out)


def _signature(message: Message) -> str:
    """What a turn asked for, with strings compared as words: a query repeated with another
    trailing space or case is the same call (the local model loops that way)."""
    return json.dumps([[c.name, _normalized(c.arguments)] for c in message.tool_calls],
                      sort_keys=True)


def _normalized(value: Any) -> Any:
    if isinstance(value, str):
        return " ".join(value.split()).casefold()
    if isinstance(value, dict):
        return {k: _normalized(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalized(v) for v in value]
    return value


def _repeats(messages: Sequence[Message], limit: int) -> bool:
    """True when the last `limit` assistant turns of the current user turn asked for the same calls."""
    turns: list[str] = []
    for m in reversed(messages):
        if m.role is Role.USER:
            break
        if m.role is Role.ASSISTANT and m.tool_calls:
            turns.append(_signature(m))
    return len(turns) >= limit and len(set(turns[:limit])) == 1


def _turn_start(record: RunRecord) -> int:
    """The first step of the current user turn."""
    last_user = max((s for s, m in record.messages if m.role is Role.USER), default=0)
    return last_user


class AgentError(RaglineError):
    """An agent run could not be built or continued."""
