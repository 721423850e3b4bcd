"""`ragline train verifier` on a tiny claim set: it trains, exports a model that loads without
torch, writes a manifest with hashes, resumes from a checkpoint, and never leaves a half-written
model in place."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragline.answer.support_model import SupportModel, read_manifest
from ragline.cli import app
from ragline.train.cross_encoder import TrainConfig, length_batches

pytest.importorskip("torch")
pytest.importorskip("transformers")

runner = CliRunner()

CITIES = ["Paris", "Lima", "Oslo", "Cairo", "Quito", "Hanoi", "Dakar", "Riga", "Sofia", "Bern"]
COUNTRIES = ["France", "Peru", "Norway", "Egypt", "Ecuador", "Vietnam", "Senegal", "Latvia",
             "Bulgaria", "Switzerland"]


def _claims(path: Path, n: int = 240) -> Path:
    rng = random.Random(0)
    with path.open("w") as handle:
        for i in range(n):
            k = rng.randrange(len(CITIES))
            doc = f"{CITIES[k]} is the capital of {COUNTRIES[k]}. It has a long history."
            other = COUNTRIES[(k + 1 + rng.randrange(len(CITIES) - 1)) % len(CITIES)]
            label = i % 2
            claim = f"{CITIES[k]} is the capital of {COUNTRIES[k] if label else other}."
            handle.write(json.dumps({"id": f"c{i}", "doc": doc, "claim": claim,
                                     "label": label}) + "\n")
    return path


def test_length_batches_cover_every_pair_once_with_similar_lengths() -> None:
    lengths = [random.Random(1).randrange(5, 300) for _ in range(1000)]
    batches = length_batches(lengths, 16, random.Random(2))
    assert sorted(i for b in batches for i in b) == list(range(1000))
    spread = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches]
    assert sorted(spread)[len(spread) // 2] < 20


def test_config_fingerprint_changes_with_recipe() -> None:
    assert TrainConfig().fingerprint("d", "b") != TrainConfig(seed=1).fingerprint("d", "b")
    assert TrainConfig().fingerprint("d", "b") != TrainConfig().fingerprint("e", "b")


@pytest.mark.integration
def test_train_verifier_writes_a_loadable_model_with_manifest(tmp_path: Path) -> None:
    data = _claims(tmp_path / "claims.jsonl")
    out = tmp_path / "model"
    result = runner.invoke(app, ["train", "verifier", "--data", str(data), "--out", str(out),
                                 "--epochs", "1", "--batch-size", "16", "--max-length", "64",
                                 "--threads", "1", "--json"])
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.stdout)
    assert manifest["training"]["pairs"] > 200 and manifest["data"]
    assert {"fp32", "int8", "before_cosine"} <= set(manifest["dev"])
    assert manifest["graph"]["nan_guards_dropped"] == 6  # the exact clean-up ran on the export
    info = read_manifest(out)  # checks every sha256
    assert info.max_length == 64
    model = SupportModel(out, threads=1)
    assert model.score([("Oslo is the capital of Norway.", "Oslo is in Norway.")]).shape == (1,)
    assert not list(tmp_path.glob(".model.*"))  # no staging or checkpoint left behind


@pytest.mark.integration
def test_interrupted_training_resumes_and_keeps_the_old_model(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    from ragline.train import cross_encoder
    from ragline.train.verifier import train_verifier

    data = _claims(tmp_path / "claims.jsonl")
    out = tmp_path / "model"
    out.mkdir()
    (out / "previous.txt").write_text("the old model")
    config = TrainConfig(max_length=64, threads=1, checkpoint_every=4)
    calls = {"n": 0}

    def stop_at_step_6(step: int, total: int, loss: float) -> None:
        calls["n"] += 1
        if step == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_verifier([data], out, config=config, progress=stop_at_step_6)
    assert (out / "previous.txt").exists()  # the old model is untouched
    assert (tmp_path / ".model.work" / "checkpoint.pt").exists()
    seen: list[int] = []
    real_train = cross_encoder.train

    def spy(*args: object, **kwargs: object) -> object:
        kwargs["progress"] = lambda step, total, loss: seen.append(step)
        return real_train(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("ragline.train.verifier.train", spy)
    train_verifier([data], out, config=config)
    assert seen[0] == 5  # resumed after the checkpoint at step 4
    assert not (out / "previous.txt").exists() and (out / "manifest.json").exists()
