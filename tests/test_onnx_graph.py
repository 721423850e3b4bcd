"""The exact graph clean-up behind the verifier's speed: same outputs, fewer nodes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ragline.answer.support_model import SHIPPED_DIR, SupportModel, read_manifest
from ragline.cli import app

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

from ragline.train.onnx_graph import simplify, simplify_file  # noqa: E402

runner = CliRunner()


def _attention_like(path: Path) -> Path:
    """Two 'layers', each converting the same mask with its own Where and guarding its
    softmax against NaN: the shape of the legacy exporter's SDPA attention."""
    nodes = [helper.make_node("Constant", [], ["zero"], value=helper.make_tensor(
        "z", TensorProto.FLOAT, [], [0.0]))]
    last = "x"
    for layer in range(2):
        nodes += [
            helper.make_node("Constant", [], [f"ninf{layer}"], value=helper.make_tensor(
                "n", TensorProto.FLOAT, [], [float("-inf")])),
            helper.make_node("Constant", [], [f"z{layer}"], value=helper.make_tensor(
                "z", TensorProto.FLOAT, [], [0.0])),
            helper.make_node("Where", ["mask", f"z{layer}", f"ninf{layer}"], [f"bias{layer}"]),
            helper.make_node("Add", [last, f"bias{layer}"], [f"scores{layer}"]),
            helper.make_node("Softmax", [f"scores{layer}"], [f"p{layer}"], axis=-1),
            helper.make_node("IsNaN", [f"p{layer}"], [f"nan{layer}"]),
            helper.make_node("Where", [f"nan{layer}", "zero", f"p{layer}"], [f"safe{layer}"]),
        ]
        last = f"safe{layer}"
    nodes.append(helper.make_node("Identity", [last], ["y"]))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 4]),
                     helper.make_tensor_value_info("mask", TensorProto.BOOL, ["b", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def _run(path: Path, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"x": x, "mask": mask})[0])


def test_duplicates_merge_and_nan_guards_go_with_identical_outputs(tmp_path: Path) -> None:
    source = _attention_like(tmp_path / "a.onnx")
    model = onnx.load(str(source))
    report = simplify(model)
    onnx.checker.check_model(model)
    ops = [n.op_type for n in model.graph.node]
    assert "IsNaN" not in ops and report.nan_guards == 2
    assert ops.count("Where") == 1 and report.merged >= 3  # two constants and one mask Where
    target = tmp_path / "b.onnx"
    onnx.save(model, str(target))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4)).astype(np.float32)
    mask = np.array([[True, True, False, True], [True, False, False, False],
                     [True, True, True, True]])
    assert np.array_equal(_run(source, x, mask), _run(target, x, mask))
    assert not simplify(model).changed  # a second pass finds nothing


def test_a_guard_on_something_other_than_a_softmax_stays(tmp_path: Path) -> None:
    nodes = [helper.make_node("Constant", [], ["zero"], value=helper.make_tensor(
                 "z", TensorProto.FLOAT, [], [0.0])),
             helper.make_node("IsNaN", ["x"], ["nan"]),
             helper.make_node("Where", ["nan", "zero", "x"], ["y"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert simplify(model).nan_guards == 0
    assert [n.op_type for n in model.graph.node] == ["Constant", "IsNaN", "Where"]


def test_simplify_file_refuses_a_graph_whose_outputs_would_change(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ragline.train.onnx_graph as graph_module

    source = _attention_like(tmp_path / "a.onnx")
    monkeypatch.setattr(graph_module, "_max_output_diff", lambda *a: 0.5)
    with pytest.raises(ValueError, match="changes the outputs"):
        simplify_file(source, tmp_path / "b.onnx")
    assert not list(tmp_path.glob("b.onnx*"))  # nothing half-written left


def test_shipped_verifier_is_already_simplified() -> None:
    manifest = read_manifest(SHIPPED_DIR).manifest
    assert manifest["graph"]["max_abs_diff"] == 0.0
    model = onnx.load(str(SHIPPED_DIR / "model.onnx"))
    assert "IsNaN" not in {n.op_type for n in model.graph.node}


@pytest.mark.integration
def test_simplify_command_rewrites_an_unsimplified_export_with_the_same_scores(
        tmp_path: Path) -> None:
    folder = tmp_path / "verifier"
    shutil.copytree(SHIPPED_DIR, folder)
    # Put the NaN guards back, as the legacy exporter writes them, to have something to undo.
    model = onnx.load(str(folder / "model.onnx"))
    nodes = list(model.graph.node)
    for node in nodes:
        if node.op_type == "MatMul" and any(n.op_type == "Softmax" and n.output[0] in node.input
                                             for n in nodes):
            probs = next(i for i in node.input if any(
                n.op_type == "Softmax" and n.output[0] == i for n in nodes))
            index = list(model.graph.node).index(node)
            model.graph.node.insert(index, helper.make_node("IsNaN", [probs], [probs + "_nan"]))
            model.graph.node.insert(index + 1, helper.make_node(
                "Where", [probs + "_nan", probs + "_zero", probs], [probs + "_safe"]))
            model.graph.node.insert(index, helper.make_node(
                "Constant", [], [probs + "_zero"],
                value=helper.make_tensor("z", TensorProto.FLOAT, [], [0.0])))
            node.input[list(node.input).index(probs)] = probs + "_safe"
    onnx.save(model, str(folder / "model.onnx"))
    manifest = json.loads((folder / "manifest.json").read_text())
    from ragline.answer.support_model import sha256_file

    manifest["files"]["model.onnx"] = sha256_file(folder / "model.onnx")
    del manifest["graph"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    pairs = [("Oslo is the capital of Norway. It lies on a fjord.", "Oslo is in Norway."),
             ("Alcohol is not reimbursable.", "Alcohol is reimbursable.")]
    before = SupportModel(folder, threads=1).score(pairs)

    result = runner.invoke(app, ["train", "simplify", str(folder)])
    assert result.exit_code == 0, result.output
    assert "6 NaN guards dropped" in result.output
    info = read_manifest(folder)  # the new sha256 checks out
    assert info.manifest["graph"]["applied_to_sha256"] != info.manifest["files"]["model.onnx"]
    assert np.allclose(SupportModel(folder, threads=1).score(pairs), before, atol=1e-6)
    again = runner.invoke(app, ["train", "simplify", str(folder)])
    assert again.exit_code == 0 and "nothing to simplify" in again.output


def test_simplify_command_without_a_manifest_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "simplify", str(tmp_path)])
    assert result.exit_code == 2
    assert "no manifest.json" in result.output
    assert "Traceback" not in result.output
