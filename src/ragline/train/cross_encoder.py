"""One trainer for cross-encoders over (text_a, text_b, label) pairs, exported to ONNX.

Used by the claim verifier (text_a = evidence, text_b = claim) and meant for any later pair model
(a reranker: query, passage). It needs the `train` extra (torch, transformers); the models it
writes run on onnxruntime alone (`ragline.answer.support_model`).

* Tokenisation is the `tokenizers` library, the same code path inference uses, with the same
  truncation (only the first text is cut), so training and serving cannot disagree.
* Batches are length-bucketed (sorted within pools of 50 batches, then shuffled) and padded to
  their longest pair: short NLI pairs cost a fraction of a 256-token batch.
* Training state is checkpointed every `checkpoint_every` steps into `<work>/checkpoint.pt`
  (written to a temporary file, then renamed); a rerun with the same recipe resumes from it, a
  rerun with another recipe starts over.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ragline.errors import RaglineError

Progress = Callable[[int, int, float], None]  # (step, total steps, running loss)


class TrainingError(RaglineError):
    """Training could not run (missing extra, bad data, unusable base model)."""


@dataclass(frozen=True, slots=True)
class Pair:
    a: str
    b: str
    label: float


@dataclass(frozen=True, slots=True)
class TrainConfig:
    epochs: float = 1.0
    batch_size: int = 16
    learning_rate: float = 4e-5
    warmup: float = 0.06
    weight_decay: float = 0.01
    max_length: int = 256
    seed: int = 13
    threads: int = 2
    checkpoint_every: int = 200

    def fingerprint(self, data_hash: str, base: str) -> str:
        raw = json.dumps({"config": asdict(self), "data": data_hash, "base": base}, sort_keys=True)
        return hashlib.sha256(raw.encode()).hexdigest()[:16]


def require_torch() -> Any:
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError:
        raise TrainingError(
            "training needs the optional extra: pip install 'ragline[train]' "
            "(torch CPU and transformers); inference never needs it"
        ) from None
    return torch


def load_tokenizer(path: Path, max_length: int) -> Any:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.enable_truncation(max_length, strategy="only_first")
    tokenizer.no_padding()
    return tokenizer


def encode_pairs(tokenizer: Any, pairs: Sequence[Pair]) -> list[tuple[list[int], list[int]]]:
    encodings = tokenizer.encode_batch([(p.a, p.b) for p in pairs])
    return [(e.ids, e.type_ids) for e in encodings]


def length_batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Indices grouped into batches of similar length, in random order."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = batch_size * 50
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start:start + pool], key=lambda i: lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(encoded: Sequence[tuple[list[int], list[int]]]) -> tuple[np.ndarray, ...]:
    width = max(len(ids) for ids, _ in encoded)
    ids = np.zeros((len(encoded), width), dtype=np.int64)
    types = np.zeros_like(ids)
    mask = np.zeros_like(ids)
    for row, (tokens, type_ids) in enumerate(encoded):
        ids[row, :len(tokens)] = tokens
        types[row, :len(tokens)] = type_ids
        mask[row, :len(tokens)] = 1
    return ids, mask, types


def save_atomic(torch: Any, state: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def train(
    pairs: Sequence[Pair],
    *,
    base: Path,
    tokenizer_file: Path,
    work: Path,
    config: TrainConfig,
    data_hash: str,
    progress: Progress | None = None,
) -> Any:
    """Fine-tune `base` (a BERT-family folder with config.json + weights) on `pairs`.

    Returns the trained torch model (single logit; sigmoid = probability of label 1).
    """
    torch = require_torch()
    from transformers import AutoModelForSequenceClassification, get_linear_schedule_with_warmup
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]  # "some weights were newly initialised" is the point here
    if not pairs:
        raise TrainingError("no training pairs")
    if len({p.label for p in pairs}) < 2:
        raise TrainingError(f"all {len(pairs)} training pairs have the label {pairs[0].label:g}: "
                            "a pair model needs examples of both classes")
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = random.Random(config.seed)
    tokenizer = load_tokenizer(tokenizer_file, config.max_length)
    encoded = encode_pairs(tokenizer, pairs)
    labels = [p.label for p in pairs]
    epochs = max(1, math.ceil(config.epochs))
    plans = [length_batches([len(e[0]) for e in encoded], config.batch_size, rng)
             for _ in range(epochs)]
    schedule = [b for plan in plans for b in plan]
    schedule = schedule[:max(1, round(len(plans[0]) * config.epochs))]
    try:
        model = AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=1)
    except (OSError, ValueError) as exc:
        raise TrainingError(f"cannot load the base model from {base}: {exc}") from None
    no_decay = ("bias", "LayerNorm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)],
         "weight_decay": config.weight_decay},
        {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)],
         "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=config.learning_rate)
    scheduler = get_linear_schedule_with_warmup(  # type: ignore[no-untyped-call]
        optimizer, int(config.warmup * len(schedule)), len(schedule))
    work.mkdir(parents=True, exist_ok=True)
    checkpoint = work / "checkpoint.pt"
    fingerprint = config.fingerprint(data_hash, str(base))
    step, loss_avg = 0, 0.0
    if checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)
        if state.get("fingerprint") == fingerprint:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            step, loss_avg = state["step"], state["loss"]
            torch.set_rng_state(state["torch_rng"])
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    while step < len(schedule):
        batch = schedule[step]
        ids, mask, types = (torch.from_numpy(a) for a in collate([encoded[i] for i in batch]))
        target = torch.tensor([labels[i] for i in batch], dtype=torch.float32)
        logits = model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits[:, 0]
        loss = loss_fn(logits, target)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        step += 1
        loss_avg = loss.item() if step == 1 else 0.98 * loss_avg + 0.02 * loss.item()
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


def export_onnx(model: Any, path: Path, *, opset: int = 17) -> None:
    """Export a sequence-classification model: inputs input_ids, attention_mask, token_type_ids
    (int64 [batch, seq]); output logits [batch, 1]."""
    torch = require_torch()

    class _Logits(torch.nn.Module):  # type: ignore[misc, name-defined]
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).logits

    dummy = tuple(torch.ones((2, 16), dtype=torch.int64) for _ in range(3))
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {n: {0: "batch", 1: "sequence"} for n in names} | {"logits": {0: "batch"}}
    with torch.no_grad():
        torch.onnx.export(_Logits(model.eval()), dummy, str(path), input_names=names,
                          output_names=["logits"], dynamic_axes=axes, opset_version=opset,
                          dynamo=False)


def quantize_int8(source: Path, target: Path) -> None:
    """Dynamic int8 quantisation of the weights (activations stay float), as the embedder."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)


def export_fp32_and_int8(model: Any, folder: Path) -> Any:
    """`model.fp32.onnx` (graph cleaned up by `train/onnx_graph.py`) and its int8 quantisation
    `model.onnx` in `folder`; returns the clean-up's report."""
    from ragline.train.onnx_graph import simplify_file

    export_onnx(model, folder / "model.fp32.onnx")
    report = simplify_file(folder / "model.fp32.onnx", folder / "model.fp32.onnx")
    quantize_int8(folder / "model.fp32.onnx", folder / "model.onnx")
    for leftover in folder.glob("*.onnx.data"):
        leftover.unlink()
    return report


def write_manifest(folder: Path, *, model_id: str, model_file: str, threshold: float,
                   max_length: int, extra: dict[str, Any]) -> None:
    """The `manifest.json` that `answer.support_model.read_manifest` checks: the model and
    tokenizer files with their sha256, the decision threshold, the window, and `extra`."""
    from ragline.answer.support_model import sha256_file

    files = {name: sha256_file(folder / name) for name in (model_file, "tokenizer.json")}
    manifest = {"model_id": model_id, "model_file": model_file, "threshold": threshold,
                "max_length": max_length, "files": files, **extra}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def install_folder(stage: Path, out: Path) -> None:
    """Replace `out` by the finished `stage` (the old model stays until the new one is whole)."""
    old = out.parent / f".{out.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        os.replace(out, old)
    os.replace(stage, out)
    shutil.rmtree(old, ignore_errors=True)


def training_libraries() -> dict[str, str]:
    """Versions of the libraries a trained model depends on, for its manifest."""
    names = ("torch", "transformers", "onnxruntime", "onnx", "tokenizers", "numpy")
    found = {}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    found["python"] = platform.python_version()
    return found


def machine() -> dict[str, Any]:
    return {"platform": platform.platform(), "cpus": os.cpu_count()}


def git_sha() -> str | None:
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


class StepTimer:
    """Steps per second over the run, for the progress line."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def rate(self, steps: int) -> float:
        return steps / max(1e-9, time.perf_counter() - self.start)
