"""Synthetic training queries from an index's own passages (the InPars / Promptagator recipe).

For each sampled passage an LLM (through the LLM layer, so every call is in the ledger with its
cost) writes one question the passage answers. A question is kept only if the current search
finds its passage in the top `k` (round-trip consistency); the best-ranked hits from other
documents become its hard negatives. Every passage's outcome is appended to `pairs.jsonl` as it
is decided, so an interrupted run resumes where it stopped; `queries.jsonl`, `qrels/train.tsv`
(query id, document id, 1) and `manifest.json` (settings, counts, questions per minute, cost,
sha256 of the pairs) are written at the end.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragline.answer.condense import clean_rewrite
from ragline.answer.prompts import load_prompt
from ragline.errors import RaglineError

if TYPE_CHECKING:
    from ragline.index import Index
    from ragline.llm import LLM

PROMPT = "synthetic_query"
MIN_PASSAGES = 20  # fewer usable passages than this cannot train anything
MIN_PASSAGE_WORDS = 30
MIN_QUESTION_WORDS, MAX_QUESTION_WORDS = 4, 40
Progress = Callable[[int, int, int, float], None]  # done, total, kept, cost so far (USD)


class AdaptError(RaglineError):
    """Synthetic data cannot be generated (too small an index, a resumed run that differs)."""


@dataclass(frozen=True, slots=True)
class GenerationSettings:
    passages: int = 200
    k: int = 10
    negatives: int = 3
    seed: int = 0
    max_tokens: int = 64


@dataclass(slots=True)
class GenerationSummary:
    passages: int
    generated: int  # questions the model returned in a usable form
    malformed: int  # empty, too short or too long replies (filtered and counted)
    kept: int  # questions whose passage the current search found in its top k
    seconds: float
    cost_usd: float
    out: str
    asked_this_run: int = 0  # model calls of this run (a resumed run skips the done ones)

    @property
    def kept_share(self) -> float:
        return self.kept / self.generated if self.generated else 0.0

    @property
    def questions_per_minute(self) -> float:
        """Model calls per minute of this run (filtering and searching included)."""
        return 60.0 * self.asked_this_run / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "kept_share": round(self.kept_share, 4),
                "questions_per_minute": round(self.questions_per_minute, 2)}


def parse_question(reply: str) -> str | None:
    """The question in a model's reply, or None when the reply is not a usable question."""
    question = clean_rewrite(reply)
    words = question.split()
    if not MIN_QUESTION_WORDS <= len(words) <= MAX_QUESTION_WORDS:
        return None
    return question


def generate(index: Index, llm: LLM, out: Path, settings: GenerationSettings = GenerationSettings(),
             *, progress: Progress | None = None) -> GenerationSummary:
    """Generate, filter and write synthetic queries for `index` into `out` (resuming)."""
    store = index.store
    template = load_prompt(PROMPT)
    key = {"prompt": f"{PROMPT}.v{template.version}", "store": store.store_id,
           **asdict(settings)}
    out.mkdir(parents=True, exist_ok=True)
    _check_resumable(out, key)
    rng = random.Random(settings.seed)
    rowids = sorted(store.doc_ids_by_rowid())
    sample = rng.sample(rowids, min(len(rowids), settings.passages * 2))  # room for short ones
    chunks = store.chunks_by_rowid(sample)
    passages = [chunks[r].chunk for r in sample if r in chunks
                and len(chunks[r].chunk.text.split()) >= MIN_PASSAGE_WORDS][: settings.passages]
    if len(passages) < MIN_PASSAGES:
        raise AdaptError(f"the index has {len(passages)} passages of {MIN_PASSAGE_WORDS}+ words; "
                         f"synthetic training data needs at least {MIN_PASSAGES} (ingest more "
                         "documents first)")
    log = out / "pairs.jsonl"
    done = _done(log)
    started, cost, fresh = time.perf_counter(), 0.0, 0
    with log.open("a", encoding="utf-8") as sink:
        for n, chunk in enumerate(passages, 1):
            if chunk.id in done:
                continue
            row: dict[str, Any] = {"chunk_id": chunk.id, "doc_id": chunk.doc_id}
            completion = llm.complete(
                [_message(m) for m in template.messages(passage=chunk.text)],
                temperature=0.7, max_tokens=settings.max_tokens, purpose="synthetic-query",
                seed=settings.seed + n)
            cost += completion.cost_usd or 0.0
            fresh += 1
            row["cost_usd"] = completion.cost_usd or 0.0
            question = parse_question(completion.text)
            if question is None:
                row.update(question=None, kept=False, reason="malformed")
            else:
                hits = index.search(question, k=settings.k + settings.negatives)
                ids = [h.chunk.id for h in hits]
                rank = ids.index(chunk.id) + 1 if chunk.id in ids[: settings.k] else None
                negatives = [h.chunk.id for h in hits if h.chunk.doc_id != chunk.doc_id]
                row.update(question=question, kept=rank is not None, rank=rank,
                           reason=None if rank else f"passage not in the top {settings.k}",
                           negatives=negatives[: settings.negatives])
            sink.write(json.dumps(row) + "\n")
            sink.flush()
            done[chunk.id] = row
            if progress:
                progress(len(done), len(passages),
                         sum(1 for r in done.values() if r["kept"]), cost)
    seconds = time.perf_counter() - started
    return _finish(out, key, passages, done, seconds, fresh, llm)


def _message(m: dict[str, str]) -> Any:
    from ragline.llm import Message, Role

    return Message(Role(m["role"]), m["content"])


def _check_resumable(out: Path, key: dict[str, Any]) -> None:
    state = out / "settings.json"
    if state.exists():
        before = json.loads(state.read_text())
        if before != key:
            changed = sorted(k for k in key if before.get(k) != key[k])
            raise AdaptError(f"{out} holds a run with other settings ({', '.join(changed)}); "
                             "use another --out folder, or the same settings to resume it")
    else:
        state.write_text(json.dumps(key, indent=2))


def _done(log: Path) -> dict[str, dict[str, Any]]:
    done: dict[str, dict[str, Any]] = {}
    if log.exists():
        for line in log.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line cut by an interruption: that passage is done again
            done[row["chunk_id"]] = row
    return done


def _finish(out: Path, key: dict[str, Any], passages: list[Any],
            done: dict[str, dict[str, Any]], seconds: float, fresh: int,
            llm: LLM) -> GenerationSummary:
    rows = [done[c.id] for c in passages if c.id in done]
    kept = [r for r in rows if r["kept"]]
    with (out / "queries.jsonl").open("w", encoding="utf-8") as queries:
        for i, row in enumerate(kept):
            queries.write(json.dumps({"_id": f"s{i}", "text": row["question"],
                                      "metadata": {"chunk_id": row["chunk_id"],
                                                   "negatives": row["negatives"]}}) + "\n")
    (out / "qrels").mkdir(exist_ok=True)
    (out / "qrels" / "train.tsv").write_text(
        "query-id\tcorpus-id\tscore\n"
        + "".join(f"s{i}\t{row['doc_id']}\t1\n" for i, row in enumerate(kept)))
    summary = GenerationSummary(
        passages=len(rows), generated=sum(1 for r in rows if r["question"] is not None),
        malformed=sum(1 for r in rows if r["question"] is None), kept=len(kept),
        seconds=round(seconds, 2), cost_usd=round(sum(r["cost_usd"] for r in rows), 6),
        out=str(out), asked_this_run=fresh)
    pairs = (out / "pairs.jsonl").read_bytes()
    (out / "manifest.json").write_text(json.dumps({
        "kind": "synthetic-queries", "settings": key, "model": llm.model,
        "summary": summary.to_dict(), "pairs_sha256": hashlib.sha256(pairs).hexdigest(),
    }, indent=2))
    return summary
