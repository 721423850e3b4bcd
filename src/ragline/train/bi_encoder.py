"""Contrastive fine-tuning of the embedding model (a bi-encoder) on (query, passage, negatives).

The loss is the one sentence-transformers calls MultipleNegativesRankingLoss (InfoNCE): in a
batch of B queries, each query's positive passage must score above the other B-1 positives
(in-batch negatives) and above every mined hard negative in the batch, with cosine similarity
times `scale` as the logit. Embeddings are mean-pooled over the attention mask and normalised,
exactly as `embed.onnx.OnnxEmbedder` computes them at inference, and the export keeps the
packaged model's interface (inputs input_ids, attention_mask, token_type_ids; output
last_hidden_state [batch, seq, 384]), so the fine-tuned file is a drop-in `[embedder] model`.

Tokenisation, length-bucketed batches, the step checkpoint and its resume are the cross-encoder
trainer's (`train.cross_encoder`); only the objective differs.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragline.train.cross_encoder import (
    Progress,
    TrainConfig,
    TrainingError,
    length_batches,
    load_tokenizer,
    require_torch,
    save_atomic,
)

QUERY_MAX_LENGTH = 64


@dataclass(frozen=True, slots=True)
class Triple:
    query: str
    positive: str
    negatives: tuple[str, ...] = ()


def _pad(rows: Sequence[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(r) for r in rows)
    ids = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, tokens in enumerate(rows):
        ids[i, :len(tokens)] = tokens
        mask[i, :len(tokens)] = 1
    return ids, mask


def train_bi_encoder(
    triples: Sequence[Triple],
    *,
    base: Path,
    tokenizer_file: Path,
    work: Path,
    config: TrainConfig,
    data_hash: str,
    hard_negatives: int = 1,
    scale: float = 20.0,
    progress: Progress | None = None,
) -> Any:
    """Fine-tune `base` (a BERT-family folder) as a bi-encoder; returns the torch model."""
    torch = require_torch()
    from transformers import AutoModel, get_linear_schedule_with_warmup
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    if len(triples) < 2:
        raise TrainingError(f"{len(triples)} training queries: contrastive training needs at "
                            "least 2 (each batch's other passages are its negatives)")
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = random.Random(config.seed)
    passages = load_tokenizer(tokenizer_file, config.max_length)
    queries = load_tokenizer(tokenizer_file, QUERY_MAX_LENGTH)
    q_ids = [e.ids for e in queries.encode_batch([t.query for t in triples])]
    p_ids = [e.ids for e in passages.encode_batch([t.positive for t in triples])]
    n_ids = [[e.ids for e in passages.encode_batch(list(t.negatives[:hard_negatives]))]
             if t.negatives and hard_negatives else [] for t in triples]
    epochs = max(1, math.ceil(config.epochs))
    plans = [length_batches([len(p) for p in p_ids], config.batch_size, rng)
             for _ in range(epochs)]
    schedule = [b for plan in plans for b in plan if len(b) > 1]  # one query has no negatives
    schedule = schedule[:max(1, round(len(schedule) / epochs * config.epochs))]
    try:
        model = AutoModel.from_pretrained(str(base))
    except (OSError, ValueError) as exc:
        raise TrainingError(f"cannot load the base model from {base}: {exc}") from None
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    scheduler = get_linear_schedule_with_warmup(  # type: ignore[no-untyped-call]
        optimizer, int(config.warmup * len(schedule)), len(schedule))
    work.mkdir(parents=True, exist_ok=True)
    checkpoint = work / "checkpoint.pt"
    fingerprint = config.fingerprint(f"{data_hash}:bi:{hard_negatives}:{scale}", str(base))
    step, loss_avg = 0, 0.0
    if checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)
        if state.get("fingerprint") == fingerprint:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            step, loss_avg = state["step"], state["loss"]
            torch.set_rng_state(state["torch_rng"])

    def embed(rows: Sequence[list[int]]) -> Any:
        ids, mask = (torch.from_numpy(a) for a in _pad(rows))
        hidden = model(input_ids=ids, attention_mask=mask,
                       token_type_ids=torch.zeros_like(ids)).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)

    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    while step < len(schedule):
        batch = schedule[step]
        query_vectors = embed([q_ids[i] for i in batch])
        candidates = [p_ids[i] for i in batch] + [n for i in batch for n in n_ids[i]]
        passage_vectors = embed(candidates)
        logits = scale * query_vectors @ passage_vectors.T
        loss = loss_fn(logits, torch.arange(len(batch)))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        step += 1
        loss_avg = loss.item() if step == 1 else 0.9 * loss_avg + 0.1 * loss.item()
        if progress is not None:
            progress(step, len(schedule), loss_avg)
        if step % config.checkpoint_every == 0 and step < len(schedule):
            save_atomic(torch, {
                "fingerprint": fingerprint, "step": step, "loss": loss_avg,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state(),
            }, checkpoint)
    model.eval()
    return model


def export_embedder_onnx(model: Any, path: Path, *, opset: int = 17) -> None:
    """The packaged embedder's interface: input_ids, attention_mask, token_type_ids (int64
    [batch, seq]) -> last_hidden_state [batch, seq, dim]."""
    torch = require_torch()

    class _Hidden(torch.nn.Module):  # type: ignore[misc, name-defined]
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    dummy = tuple(torch.ones((2, 16), dtype=torch.int64) for _ in range(3))
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = ({n: {0: "batch", 1: "sequence"} for n in names}
            | {"last_hidden_state": {0: "batch", 1: "sequence"}})
    with torch.no_grad():
        torch.onnx.export(_Hidden(model.eval()), dummy, str(path), input_names=names,
                          output_names=["last_hidden_state"], dynamic_axes=axes,
                          opset_version=opset, dynamo=False)
