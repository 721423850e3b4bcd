"""Online A/B experiments: a collection's traffic split between two configurations.

    ragline experiments create NAME --collection docs --a configs/hybrid.toml \\
        --b configs/bm25.toml --share 0.5
    ragline experiments report NAME

An arm is a ragline TOML file whose `[search]` and `[llm]` tables apply on top of the
collection's own configuration (chunking and the embedder belong to the index and cannot
differ per request). The files' contents are copied into `<data_dir>/experiments.sqlite`, so
editing a file later does not change a running experiment. A request goes to arm B with
probability `share`, sticky: the same user (the request's `user` field or `X-Ragline-User`
header), or else the same key, always gets the same arm. The arm is recorded on the request's
trace; `report` compares the arms' answers on thumbs-up rate, verifier flag rate, latency and
cost with two-sample statistics (`ragline.evaluate.stats`: the arms are independent groups).
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import threading
import time
import tomllib
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragline import _sqlite
from ragline.errors import ConfigError
from ragline.server.traces import TraceStore, TraceSummary

EXPERIMENTS_FILE = "experiments.sqlite"
ARM_SECTIONS = ("search", "llm")
ARMS = ("a", "b")
ANSWERS = ("ask", "chat.completions")  # the operations an experiment's report compares
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS experiments (
    name TEXT PRIMARY KEY,
    collection TEXT NOT NULL,
    share REAL NOT NULL,
    a TEXT NOT NULL,
    b TEXT NOT NULL,
    a_source TEXT NOT NULL,
    b_source TEXT NOT NULL,
    created REAL NOT NULL,
    stopped REAL
)
"""


@dataclass(frozen=True, slots=True)
class Experiment:
    name: str
    collection: str
    share: float  # of traffic sent to arm b
    a: dict[str, Any]  # the arm's [search] / [llm] overrides
    b: dict[str, Any]
    a_source: str
    b_source: str
    created: float
    stopped: float | None = None

    def arm_for(self, unit: str) -> str:
        """'a' or 'b' for a user (or key): a hash of (experiment, unit), so sticky and
        independent across experiments."""
        digest = hashlib.sha256(f"{self.name}\0{unit}".encode()).digest()
        return "b" if int.from_bytes(digest[:8], "big") / 2**64 < self.share else "a"

    def overrides(self, arm: str) -> dict[str, Any]:
        return self.b if arm == "b" else self.a

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "collection": self.collection, "share": self.share,
                "a": {"source": self.a_source, "settings": self.a},
                "b": {"source": self.b_source, "settings": self.b},
                "created": self.created, "stopped": self.stopped}


def read_arm(path: Path) -> dict[str, Any]:
    """The `[search]` and `[llm]` tables of an arm's TOML file, validated."""
    from ragline.config import load_config

    load_config(path)  # the whole file must be a valid configuration (names a bad key)
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    other = sorted(k for k in raw if k not in (*ARM_SECTIONS, "name"))
    if other:
        raise ConfigError(f"{path}: an experiment arm may set [search] and [llm] only, not "
                          f"{', '.join(other)} (chunking, the embedder and the store belong to "
                          "the collection's index)")
    return {k: raw[k] for k in ARM_SECTIONS if k in raw}


def unit_of(user: str | None, key_id: str) -> str:
    """What an arm is sticky to: the user when the request names one, else the key."""
    return f"user:{user}" if user else f"key:{key_id}"


class ExperimentStore:
    """`<data_dir>/experiments.sqlite`; each call opens its own connection (any thread, any
    worker process)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def in_dir(cls, data_dir: Path) -> ExperimentStore:
        return cls(data_dir / EXPERIMENTS_FILE)

    def _db(self) -> AbstractContextManager[sqlite3.Connection]:
        return _sqlite.transaction(self.path, _SCHEMA)

    def create(self, name: str, collection: str, a: Path, b: Path,
               share: float = 0.5) -> Experiment:
        if not name or set(name) - _NAME_CHARS or len(name) > 64:
            raise ConfigError(f"invalid experiment name {name!r}: use lower-case letters, "
                              "digits, '-' and '_' (at most 64)")
        if not 0.0 < share < 1.0:
            raise ConfigError(f"--share is the fraction of traffic for arm b, between 0 and 1 "
                              f"(exclusive), got {share}")
        arms = read_arm(a), read_arm(b)
        if arms[0] == arms[1]:
            raise ConfigError(f"{a} and {b} set the same [search] and [llm]: the arms would not "
                              "differ")
        running = self.active(collection)
        if running is not None:
            raise ConfigError(f"collection {collection!r} already runs experiment "
                              f"{running.name!r}; stop it first (ragline experiments stop "
                              f"{running.name})")
        found = Experiment(name, collection, share, arms[0], arms[1], str(a), str(b),
                           time.time())
        try:
            with self._db() as conn:
                conn.execute(
                    "INSERT INTO experiments (name, collection, share, a, b, a_source, "
                    "b_source, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (name, collection, share, json.dumps(arms[0]), json.dumps(arms[1]),
                     str(a), str(b), found.created))
        except sqlite3.IntegrityError:
            raise ConfigError(f"an experiment named {name!r} exists already; pick another "
                              "name (ragline experiments list)") from None
        return found

    def all(self) -> list[Experiment]:
        with self._db() as conn:
            rows = conn.execute("SELECT * FROM experiments ORDER BY created").fetchall()
        return [_experiment(r) for r in rows]

    def get(self, name: str) -> Experiment:
        with self._db() as conn:
            row = conn.execute("SELECT * FROM experiments WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise ConfigError(f"no experiment {name!r}; `ragline experiments list` shows them")
        return _experiment(row)

    def active(self, collection: str) -> Experiment | None:
        with self._db() as conn:
            row = conn.execute("SELECT * FROM experiments WHERE collection = ? AND stopped IS "
                               "NULL ORDER BY created DESC LIMIT 1", (collection,)).fetchone()
        return None if row is None else _experiment(row)

    def stop(self, name: str) -> Experiment:
        self.get(name)
        with self._db() as conn:
            conn.execute("UPDATE experiments SET stopped = ? WHERE name = ? AND stopped IS NULL",
                         (time.time(), name))
        return self.get(name)


def _experiment(row: Sequence[Any]) -> Experiment:
    name, collection, share, a, b, a_source, b_source, created, stopped = row
    return Experiment(str(name), str(collection), float(share), json.loads(a), json.loads(b),
                      str(a_source), str(b_source), float(created),
                      None if stopped is None else float(stopped))


class Experiments:
    """What the server asks per request: the running experiment of a collection, re-read at
    most every `ttl` seconds (so `experiments create/stop` reach running servers quickly)."""

    def __init__(self, store: ExperimentStore, *, ttl: float = 2.0) -> None:
        self.store, self.ttl = store, ttl
        self._cache: dict[str, tuple[float, Experiment | None]] = {}
        self._lock = threading.Lock()

    def active(self, collection: str) -> Experiment | None:
        now = time.monotonic()
        with self._lock:
            held = self._cache.get(collection)
            if held is not None and now - held[0] < self.ttl:
                return held[1]
        found = self.store.active(collection)
        with self._lock:
            self._cache[collection] = (now, found)
        return found


# ---------------------------------------------------------------- the report

# metric: (what it measures, higher is better)
METRICS: dict[str, tuple[str, bool]] = {
    "thumbs_up": ("share of rated answers rated up", True),
    "flag_rate": ("share of an answer's claims the verifier flagged (answers with claims)",
                  False),
    "latency_s": ("seconds from request to the whole answer", False),
    "cost_usd": ("generation cost per answer, USD (priced models only)", False),
}


def arm_values(traces: Sequence[TraceSummary]) -> dict[str, list[float]]:
    """Per metric, one value per answer of one arm (failed requests left out)."""
    answers = [t for t in traces if t.name in ANSWERS and t.status != "error"]
    return {
        "thumbs_up": [1.0 if t.rating == "up" else 0.0 for t in answers if t.rating],
        "flag_rate": [(t.flagged or 0) / t.claims for t in answers if t.claims],
        "latency_s": [t.duration_s for t in answers],
        "cost_usd": [t.cost_usd for t in answers if t.cost_usd is not None],
    }


def compare_arms(a: dict[str, list[float]], b: dict[str, list[float]], *,
                 seed: int = 0) -> dict[str, dict[str, Any]]:
    """Each metric of B against A: means, the difference with a two-sample bootstrap 95%
    interval, a permutation p-value (Holm-adjusted over the metrics compared), the minimum
    detectable effect at these sizes and a verdict; `null` statistics below 2 values an arm."""
    from ragline.evaluate.stats import (
        holm,
        two_sample_bootstrap_ci,
        two_sample_min_detectable_effect,
        two_sample_permutation_test,
        verdict,
    )

    rows: dict[str, dict[str, Any]] = {}
    p_values: dict[str, float] = {}
    for metric, (meaning, _) in METRICS.items():
        xa, xb = a[metric], b[metric]
        row: dict[str, Any] = {
            "meaning": meaning, "n_a": len(xa), "n_b": len(xb),
            "mean_a": sum(xa) / len(xa) if xa else None,
            "mean_b": sum(xb) / len(xb) if xb else None,
            "diff": None, "ci_low": None, "ci_high": None, "p": None, "p_holm": None,
            "mde": None, "verdict": "not enough data"}
        if len(xa) >= 2 and len(xb) >= 2:
            ci = two_sample_bootstrap_ci(xa, xb, seed=seed)
            p_values[metric] = two_sample_permutation_test(xa, xb, seed=seed)
            mde = two_sample_min_detectable_effect(xa, xb)
            row.update(diff=ci.estimate, ci_low=ci.low, ci_high=ci.high,
                       p=p_values[metric], mde=mde if math.isfinite(mde) else None)
        rows[metric] = row
    for metric, p_holm in holm(p_values).items():
        row = rows[metric]
        interval = _interval(row)
        row["p_holm"] = p_holm
        row["verdict"] = verdict(row["diff"], interval, p_holm,
                                 higher_is_better=METRICS[metric][1]).value
    return rows


def _interval(row: dict[str, Any]) -> Any:
    from ragline.evaluate.stats import Interval

    return Interval(row["diff"], row["ci_low"], row["ci_high"])


def experiment_report(experiment: Experiment, traces: TraceStore, *,
                      seed: int = 0) -> dict[str, Any]:
    """The report of `ragline experiments report`: per arm, requests and feedback counts;
    per metric, the comparison of B against A."""
    routed = traces.of_experiment(experiment.name)
    by_arm = {arm: [t for t in routed if t.arm == arm] for arm in ARMS}
    values = {arm: arm_values(by_arm[arm]) for arm in ARMS}
    arms = {arm: {"source": experiment.a_source if arm == "a" else experiment.b_source,
                  "settings": experiment.overrides(arm),
                  "answers": len(values[arm]["latency_s"]),
                  "feedback": len(values[arm]["thumbs_up"]),
                  "thumbs_up": int(sum(values[arm]["thumbs_up"]))} for arm in ARMS}
    return {"experiment": experiment.to_dict(), "arms": arms,
            "metrics": compare_arms(values["a"], values["b"], seed=seed)}
