"""Calibrate when `ragline ask` abstains: a logistic model over answerability signals.

    python benchmarks/calibrate_abstention.py [--json] [--write] [--k 5] [--support]

Three kinds of question, from public data nobody here wrote:

* answerable: HotpotQA dev-500 questions against their pooled paragraphs; SciFact train claims
  against the SciFact corpus;
* hard unanswerable: the same questions with their gold passages removed from the hits (the
  corpus then still holds the HotpotQA authors' distractors, picked to be on topic, or the other
  SciFact abstracts of the field): plausible, same-topic questions the corpus cannot answer;
* easy unanswerable: each question set asked of the other corpus.

The split is by question id (sha256, even last hex digit = calibration, odd = held out), so a
question's answerable and unanswerable forms fall in the same half. The model (sklearn logistic
regression, each kind weighted equally: answerable = hard + easy) and its threshold
(at most 10% false abstentions on calibration answerables) are fitted on the calibration half; every
figure reported comes from the held-out half. `--support` adds the trained verifier's score of
the question against the hits as a signal. With --write the model, the embedder id and the
held-out figures go to src/ragline/answer/abstention.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ragline.answer.abstention import FEATURES, answerability_signals
from ragline.config import RaglineConfig
from ragline.evaluate.datasets import load_beir, load_hotpotqa
from ragline.index import Index
from ragline.paths import ragline_home
from ragline.types import Hit

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
OUTPUT = ROOT / "src" / "ragline" / "answer" / "abstention.json"
KINDS = ("answerable", "hard", "easy")
MAX_FALSE_ABSTAIN = 0.10


def held_out(question_id: str) -> bool:
    return int(hashlib.sha256(question_id.encode()).hexdigest()[-1], 16) % 2 == 1


def corpus_index(name: str, documents: Any, cfg: RaglineConfig) -> Index:
    folder = ragline_home() / "bench" / f"{name}-{cfg.fingerprint('chunking', 'embedder')}"
    index = Index(folder, cfg, embedder=cfg.embedder.build(cache_queries=True))
    summary = index.ingest_documents(documents)
    print(f"{name}: {summary.added} added, {summary.unchanged} unchanged ({folder})",
          file=sys.stderr)
    return index


def _views(index: Index, other: Index, text: str, gold: set[str], k: int
           ) -> dict[str, list[Hit]]:
    hits = index.search(text, k=k + 20)
    return {"answerable": hits[:k],
            "hard": [h for h in hits if h.chunk.doc_id not in gold][:k],
            "easy": other.search(text, k=k)}


def collect(k: int, support: bool) -> tuple[list[dict[str, Any]], str]:
    cfg = RaglineConfig()
    scifact = load_beir(DATASETS / "scifact", split="train")
    hotpot = load_hotpotqa(DATASETS / "hotpotqa-dev500")
    sci = corpus_index("scifact", scifact.iter_documents(), cfg)
    hot = corpus_index(hotpot.name, hotpot.iter_documents(), cfg)
    questions = [("hotpot", f"hotpot:{i.id}", i.question, set(i.relevant), hot, sci)
                 for i in hotpot.items]
    questions += [("scifact", f"scifact:{q}", t, set(scifact.qrels.get(q, {})), sci, hot)
                  for q, t in scifact.queries.items() if scifact.qrels.get(q)]
    rows = []
    for n, (qset, qid, text, gold, index, other) in enumerate(questions, 1):
        for kind, hits in _views(index, other, text, gold, k).items():
            signals = answerability_signals(text, hits, index if kind != "easy" else other,
                                            with_support=support)
            rows.append({"set": qset, "id": qid, "kind": kind, "held_out": held_out(qid),
                         **signals.to_dict()})
        if n % 200 == 0:
            print(f"{n}/{len(questions)} questions", file=sys.stderr)
    return rows, sci.embedder.model_id


def _matrix(rows: list[dict[str, Any]], features: tuple[str, ...]) -> np.ndarray:
    return np.array([[r[f] for f in features] for r in rows], dtype=np.float64)


def fit(rows: list[dict[str, Any]], features: tuple[str, ...],
        max_false_abstain: float = MAX_FALSE_ABSTAIN) -> tuple[Any, float]:
    from sklearn.linear_model import LogisticRegression

    train = [r for r in rows if not r["held_out"]]
    y = np.array([r["kind"] == "answerable" for r in train])
    counts = {k: sum(r["kind"] == k for r in train) for k in KINDS}
    weight = np.array([0.5 / counts[r["kind"]] if r["kind"] != "answerable"
                       else 1.0 / counts["answerable"] for r in train])
    model = LogisticRegression(C=10.0, max_iter=1000)
    model.fit(_matrix(train, features), y, sample_weight=weight * len(train))
    p = model.predict_proba(_matrix(train, features))[:, 1]
    positives = [float(v) for v, r in zip(p, train, strict=True) if r["kind"] == "answerable"]
    # A wrongly refused answerable question costs the user more than an answered hard one, so
    # the threshold is set for at most MAX_FALSE_ABSTAIN false abstentions on calibration data.
    return model, float(np.quantile(positives, max_false_abstain))


def figures(rows: list[dict[str, Any]], model: Any, features: tuple[str, ...],
            threshold: float) -> dict[str, Any]:
    if not rows:
        return {}
    p = model.predict_proba(_matrix(rows, features))[:, 1]
    out: dict[str, Any] = {}
    for kind in KINDS:
        chosen = [v for v, r in zip(p, rows, strict=True) if r["kind"] == kind]
        answered = float(np.mean(np.asarray(chosen) >= threshold)) if chosen else None
        key = "false_abstain_rate" if kind == "answerable" else f"abstain_rate_{kind}"
        out[kind] = {"n": len(chosen), key: None if answered is None else round(1 - answered, 4)}
    return out


def tradeoff(rows: list[dict[str, Any]], model: Any, features: tuple[str, ...]
             ) -> list[dict[str, float]]:
    """Read off the ROC (a table, not a choice): the false-abstention rate on answerable
    questions at which the model abstains on 50%, 60% and 70% of hard unanswerables."""
    p = model.predict_proba(_matrix(rows, features))[:, 1]
    answerable = np.array([v for v, r in zip(p, rows, strict=True) if r["kind"] == "answerable"])
    hard = np.array([v for v, r in zip(p, rows, strict=True) if r["kind"] == "hard"])
    if not len(answerable) or not len(hard):
        return []
    return [{"abstain_rate_hard": target,
             "false_abstain_rate": round(float(np.mean(answerable < np.quantile(hard, target))), 4)}
            for target in (0.5, 0.6, 0.7)]


def report(rows: list[dict[str, Any]], features: tuple[str, ...], embedder: str, k: int,
           started: float, max_false_abstain: float = MAX_FALSE_ABSTAIN) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    model, threshold = fit(rows, features, max_false_abstain)
    held = [r for r in rows if r["held_out"]]
    calib = [r for r in rows if not r["held_out"]]
    auroc = {}
    for f in features:
        pair = [r for r in held if r["kind"] in ("answerable", "hard")]
        auroc[f] = round(float(roc_auc_score([r["kind"] == "answerable" for r in pair],
                                             [r[f] for r in pair])), 4)
    pair = [r for r in held if r["kind"] in ("answerable", "hard")]
    auroc["model"] = round(float(roc_auc_score(
        [r["kind"] == "answerable" for r in pair],
        model.predict_proba(_matrix(pair, features))[:, 1])), 4)
    from ragline.answer.support_model import SHIPPED_DIR, read_manifest

    return {
        "features": list(features),
        "weights": [round(float(w), 6) for w in model.coef_[0]],
        "bias": round(float(model.intercept_[0]), 6),
        "threshold": round(threshold, 4),
        "embedder": embedder,
        "verifier": read_manifest(SHIPPED_DIR, check_files=False).id
        if "support" in features else None,
        "signal": f"logistic P(answerable) over {', '.join(features)} of the top-{k} hits "
                  "of the default hybrid search",
        "date": dt.date.today().isoformat(),
        "command": "python benchmarks/calibrate_abstention.py --write"
                   + (" --support" if "support" in features else ""),
        "datasets": {
            "answerable": ["HotpotQA dev-500 questions against their pooled paragraphs",
                           "SciFact train claims against the SciFact corpus"],
            "hard_unanswerable": ["the same questions with their gold passages removed "
                                  "(HotpotQA's on-topic distractors remain)"],
            "easy_unanswerable": ["each question set against the other corpus"],
            "split": "sha256(question id) last hex digit even = calibration, odd = held out",
        },
        "calibration": figures(calib, model, features, threshold),
        "held_out": figures(held, model, features, threshold),
        "held_out_by_question_set": {
            s: figures([r for r in held if r["set"] == s], model, features, threshold)
            for s in ("hotpot", "scifact")},
        "held_out_auroc_answerable_vs_hard": auroc,
        "held_out_tradeoff": tradeoff(held, model, features),
        "config": {"k": k},
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=5, help="hits per question (as `ragline ask`)")
    parser.add_argument("--support", action="store_true",
                        help="add the verifier's score of the question as a signal")
    parser.add_argument("--rows", type=Path, help="cache the per-question signals here")
    parser.add_argument("--max-false-abstain", type=float, default=MAX_FALSE_ABSTAIN,
                        help="false-abstention budget on calibration answerables")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--write", action="store_true", help=f"write {OUTPUT.relative_to(ROOT)}")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.rows and args.rows.exists():
        cached = json.loads(args.rows.read_text())
        rows, embedder = cached["rows"], cached["embedder"]
    else:
        rows, embedder = collect(args.k, args.support)
        if args.rows:
            args.rows.write_text(json.dumps({"rows": rows, "embedder": embedder}))
    features = tuple(f for f in FEATURES if f != "support" or args.support)
    result = report(rows, features, embedder, args.k, started, args.max_false_abstain)
    if args.write:
        OUTPUT.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"P(answerable) threshold {result['threshold']} over {features} ({embedder})")
    for part in ("calibration", "held_out"):
        r = result[part]
        print(f"{part:>12}: false abstentions {r['answerable']['false_abstain_rate']:.1%} "
              f"(n={r['answerable']['n']}), abstains on hard unanswerables "
              f"{r['hard']['abstain_rate_hard']:.1%} (n={r['hard']['n']}), on wrong-corpus "
              f"{r['easy']['abstain_rate_easy']:.1%} (n={r['easy']['n']})")
    for qset, r in result["held_out_by_question_set"].items():
        print(f"{qset:>12}: false abstentions {r['answerable']['false_abstain_rate']:.1%}, "
              f"hard {r['hard']['abstain_rate_hard']:.1%}, easy {r['easy']['abstain_rate_easy']:.1%}")
    print(f"held-out AUROC, answerable vs hard: {result['held_out_auroc_answerable_vs_hard']}")
    for point in result["held_out_tradeoff"]:
        print(f"  abstaining on {point['abstain_rate_hard']:.0%} of hard unanswerables costs "
              f"{point['false_abstain_rate']:.1%} false abstentions (held out)")


if __name__ == "__main__":
    main()
