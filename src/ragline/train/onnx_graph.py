"""Exact graph clean-up for exported encoders: the same outputs from fewer nodes.

The legacy torch exporter writes transformers' SDPA attention as, in every layer, its own copy
of the mask conversion (`Where(mask, 0, -inf)` over [batch, 1, seq, seq]) and a NaN guard after
the softmax (`Where(IsNaN(p), 0, p)` over [batch, heads, seq, seq]). onnxruntime neither merges
the copies nor drops the guard, and on the verifier those nodes were a third of the run time
(docs/benchmarks.md, "The trained claim verifier").

Two passes, both exact for the inputs the verifier feeds:

- common subexpressions: a node with the same operator, attributes and inputs as an earlier
  one is dropped and its outputs read from the earlier node (ONNX operators are pure; the
  random ones are left alone);
- the softmax NaN guard: `Where(IsNaN(Softmax(x)), c, Softmax(x))` becomes `Softmax(x)`. A
  softmax row is NaN only when every key in it is masked; the verifier always attends to
  [CLS], so no row is. A model fed rows with no attended token must keep the guard.

Then nodes and initialisers nothing reads are removed. `simplify_file` checks the result
against the original on padded probe batches before anything is written. Needs `onnx` (the
`train` extra); inference reads the written file with onnxruntime alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_IMPURE = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
           "Multinomial", "Bernoulli", "Dropout"}
_WITH_SUBGRAPHS = {"If", "Loop", "Scan"}


@dataclass(frozen=True, slots=True)
class GraphReport:
    nodes_before: int
    nodes_after: int
    merged: int  # duplicate nodes read from their first copy
    nan_guards: int  # softmax NaN guards dropped
    max_abs_diff: float | None = None  # on the probe batches, when checked

    @property
    def changed(self) -> bool:
        return self.nodes_after < self.nodes_before

    def as_dict(self) -> dict[str, Any]:
        return {"nodes_before": self.nodes_before, "nodes_after": self.nodes_after,
                "merged": self.merged, "nan_guards_dropped": self.nan_guards,
                "max_abs_diff": self.max_abs_diff}


def simplify(model: Any) -> GraphReport:
    """Simplify an `onnx.ModelProto` in place (top-level graph only)."""
    graph = model.graph
    before = len(graph.node)
    rename: dict[str, str] = {}
    produced_by: dict[str, Any] = {}
    seen: dict[tuple[Any, ...], Any] = {}
    outputs = {o.name for o in graph.output}
    merged = guards = 0
    kept = []
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name in rename:
                node.input[k] = rename[name]
        guarded = _guarded_softmax(node, produced_by)
        if guarded is not None and node.output[0] not in outputs:
            rename[node.output[0]] = guarded
            guards += 1
            continue
        if node.op_type not in _IMPURE | _WITH_SUBGRAPHS:
            key = (node.domain, node.op_type, tuple(node.input),
                   tuple(sorted(a.SerializeToString() for a in node.attribute)))
            first = seen.get(key)
            if first is not None and not outputs.intersection(node.output):
                rename.update(zip(node.output, first.output, strict=True))
                merged += 1
                continue
            seen[key] = node
        kept.append(node)
        for name in node.output:
            produced_by[name] = node
    live = _live_nodes(kept, outputs)
    del graph.node[:]
    graph.node.extend(live)
    read = {name for node in live for name in node.input}
    unused = [init for init in graph.initializer if init.name not in read]
    for init in unused:
        graph.initializer.remove(init)
    return GraphReport(before, len(live), merged, guards)


def _guarded_softmax(node: Any, produced_by: dict[str, Any]) -> str | None:
    """The softmax output that `node` guards, when it is `Where(IsNaN(p), c, p)`."""
    if node.op_type != "Where" or len(node.input) != 3:
        return None
    condition = produced_by.get(node.input[0])
    probs = node.input[2]
    source = produced_by.get(probs)
    if (condition is None or condition.op_type != "IsNaN" or condition.input[0] != probs
            or source is None or source.op_type != "Softmax"):
        return None
    return str(probs)


def _live_nodes(nodes: list[Any], outputs: set[str]) -> list[Any]:
    needed = set(outputs)
    live = []
    for node in reversed(nodes):
        if needed.intersection(node.output):
            live.append(node)
            needed.update(node.input)
    return live[::-1]


def simplify_file(source: Path, target: Path, *, probe_length: int = 64) -> GraphReport:
    """Simplify the model at `source` into `target` (written atomically, only if the outputs
    match the original's on padded probe batches to 1e-5)."""
    import onnx

    model = onnx.load(str(source))
    report = simplify(model)
    staged = target.with_name(target.name + ".tmp")
    onnx.save(model, str(staged))
    try:
        diff = _max_output_diff(source, staged, probe_length)
        if diff > 1e-5:
            raise ValueError(f"the simplified graph changes the outputs (max diff {diff:.2e})")
        os.replace(staged, target)
    finally:
        staged.unlink(missing_ok=True)
    return GraphReport(report.nodes_before, report.nodes_after, report.merged,
                       report.nan_guards, diff)


def _max_output_diff(a: Path, b: Path, length: int) -> float:
    """Largest output difference on two padded batches ([CLS]-style first token always on)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    sessions = [onnxruntime.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
                for p in (a, b)]
    rng = np.random.default_rng(0)
    worst = 0.0
    for batch, width in ((4, length), (3, length // 2 + 3)):
        ids = rng.integers(1000, 20000, size=(batch, width), dtype=np.int64)
        mask = np.ones_like(ids)
        for row in range(1, batch):
            mask[row, width - row * (width // (batch + 1)):] = 0
        types = np.zeros_like(ids)
        types[:, width // 2:] = 1
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        names = {i.name for i in sessions[0].get_inputs()}
        feed = {k: v for k, v in feed.items() if k in names}
        first, second = (s.run(None, feed) for s in sessions)
        for x, y in zip(first, second, strict=True):
            worst = max(worst, float(np.max(np.abs(np.asarray(x) - np.asarray(y)))))
    return worst
