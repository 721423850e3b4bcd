"""Does citation verification catch planted errors, without flagging correct claims?

Builds the planted-error set (`ragline.evaluate.planted`) from HotpotQA dev-500 and reports on the
EVALUATION half: the flag rate per planted error type (target >= 90%) and the false-flag rate on
correct claims (target <= 10%). `--verifier model` (default) is the trained verifier with its
own threshold (chosen on its training dev split; nothing is fitted here). `--verifier cosine
--fit` refits the old cosine heuristic's thresholds on the CALIBRATION half only.

    .venv/bin/python benchmarks/verify_planted.py
    .venv/bin/python benchmarks/verify_planted.py --verifier cosine --fit
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ragline.answer.support import CosineScorer, SupportScorer, build_scorer
from ragline.answer.types import ClaimCheck
from ragline.answer.verify import DEFAULT_THRESHOLDS, MemoEmbedder, Thresholds, verify_answer
from ragline.embed.onnx import OnnxEmbedder
from ragline.evaluate.planted import PlantedAnswer, PlantedError, Split, build_planted_set

Fitted = tuple[SupportScorer, Thresholds]

DATASET = (
    Path(__file__).resolve().parents[2] / "shared" / "datasets" / "hotpotqa-dev500" / "qa.jsonl"
)
WEIGHTS = (0.3, 0.4, 0.5, 0.6, 0.7)
WRONG_SOURCE = (PlantedError.FABRICATED_CITATION, PlantedError.SWAPPED_SOURCES)
QUOTES = (0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def run(
    answers: list[PlantedAnswer], scorer: SupportScorer, thresholds: Thresholds
) -> list[tuple[PlantedError, str, ClaimCheck]]:
    rows = []
    for answer in answers:
        sentences = [c.sentence for c in answer.claims]
        checks = verify_answer(
            sentences, answer.source_map(), scorer=scorer, thresholds=thresholds
        )
        rows += [(c.error, c.variant, k) for c, k in zip(answer.claims, checks, strict=True)]
    return rows


def fit(answers: list[PlantedAnswer], embedder: MemoEmbedder) -> Fitted:
    """Fit the cosine heuristic's thresholds on the calibration answers only.

    Maximises flag rate minus false-flag rate (Youden's J). Among the settings that reach the
    best J, the semantic weight with the widest band of optimal support thresholds wins, and the
    support and quote thresholds are the middles of their optimal bands (the largest margin on
    both sides). `strong` is the 95th percentile of the scores of claims that cite a wrong source
    (fabricated or swapped citations): above it, wrongly cited claims are rare.
    """
    grid_t = np.round(np.arange(0.30, 0.96, 0.005), 3)
    best: tuple[float, int, float, float, float, float] | None = None
    for weight in WEIGHTS:
        # With support=0 and quote=0 a claim is flagged only by checks that no threshold moves;
        # a threshold pair (t, q) then flags exactly: base, or score < t, or quote match < q.
        rows = run(answers, CosineScorer(embedder, threshold=0.0, weight=weight),
                   Thresholds(quote=0.0))
        error = np.array([e is not PlantedError.NONE for e, _, _ in rows])
        wrong_source = np.array([e in WRONG_SOURCE for e, _, _ in rows])
        base = np.array([k.flagged for _, _, k in rows])
        score = np.array([k.support_score for _, _, k in rows])
        quote = np.array([k.quote_match if k.quote_match is not None else 1.0 for _, _, k in rows])
        table = np.array(
            [[_youden(base | (score < t) | (quote < q), error) for t in grid_t] for q in QUOTES]
        )
        top = float(table.max())
        q_rows = [i for i in range(len(QUOTES)) if table[i].max() == top]
        q_index = q_rows[len(q_rows) // 2]
        t_good = grid_t[table[q_index] == top]
        strong = float(np.quantile(score[wrong_source], 0.95)) if wrong_source.any() else 1.0
        key = (top, len(t_good), weight, float(np.median(t_good)), QUOTES[q_index], strong)
        if best is None or key[:2] > best[:2]:
            best = key
    assert best is not None
    _, _, weight, t, q, _strong = best
    return CosineScorer(embedder, threshold=round(t, 3), weight=weight), Thresholds(quote=q)


def _youden(flagged: np.ndarray, error: np.ndarray) -> float:
    return float(flagged[error].mean() - flagged[~error].mean())


def report(rows: list[tuple[PlantedError, str, ClaimCheck]]) -> dict[str, Any]:
    groups: dict[str, list[bool]] = defaultdict(list)
    verdicts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for error, variant, check in rows:
        key = f"correct ({variant})" if error is PlantedError.NONE else error.value
        groups[key].append(check.flagged)
        verdicts[key][check.verdict.value] += 1
        groups["all correct" if error is PlantedError.NONE else "all planted errors"].append(
            check.flagged
        )
    return {
        key: {
            "n": len(flags),
            "flagged": sum(flags),
            "rate": round(sum(flags) / len(flags), 4),
            "verdicts": dict(verdicts.get(key, {})),
        }
        for key, flags in sorted(groups.items())
    }


def print_table(name: str, table: dict[str, Any]) -> None:
    print(f"\n{name}")
    print(f"{'claims':<30}{'n':>6}{'flagged':>9}{'rate':>8}  verdicts")
    for key, row in table.items():
        verdicts = ", ".join(f"{v}={n}" for v, n in sorted(row["verdicts"].items()))
        print(f"{key:<30}{row['n']:>6}{row['flagged']:>9}{row['rate']:>8.1%}  {verdicts}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--answers", type=int, default=30, help="answers per split")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--verifier", choices=("model", "cosine", "overlap"), default="model")
    parser.add_argument("--fit", action="store_true",
                        help="cosine only: fit its thresholds on the calibration half")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    if not args.dataset.is_file():
        print(f"dataset not found: {args.dataset}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    answers = build_planted_set(args.dataset, seed=args.seed, answers_per_split=args.answers)
    calibration = [a for a in answers if a.split is Split.CALIBRATION]
    evaluation = [a for a in answers if a.split is Split.EVALUATION]
    embedder = MemoEmbedder(OnnxEmbedder(threads=1))
    if args.fit and args.verifier != "cosine":
        print("--fit applies to --verifier cosine only", file=sys.stderr)
        return 2
    scorer, thresholds = (fit(calibration, embedder) if args.fit else
                          (build_scorer(args.verifier, embedder=embedder), DEFAULT_THRESHOLDS))
    result = {
        "dataset": str(args.dataset),
        "seed": args.seed,
        "verifier": scorer.name,
        "threshold": scorer.threshold,
        "thresholds": asdict(thresholds),
        "thresholds_source": "fitted on calibration (--fit)" if args.fit else "defaults",
        "calibration": report(run(calibration, scorer, thresholds)),
        "evaluation": report(run(evaluation, scorer, thresholds)),
        "answers": {"calibration": len(calibration), "evaluation": len(evaluation)},
        "seconds": round(time.perf_counter() - started, 1),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"verifier {result['verifier']}, threshold {result['threshold']} "
              f"({result['thresholds_source']}), {result['thresholds']}")
        print_table(f"CALIBRATION half ({len(calibration)} answers)", result["calibration"])
        print_table(f"EVALUATION half ({len(evaluation)} answers)", result["evaluation"])
        print(f"\n{result['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
