"""Engine directories: atomic writes, what opening checks, and the --backend auto chain."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from building.load import open_model
from engines.auto import Runtimes, choose_backend
from engines.enginedir import (ENGINE_JSON, TensorRTTarget, read_engine, staged_output, write_info)
from engines.onnx_parts import tag
from tests.engines.conftest import SMALL, build
from twostream.errors import ContractMismatch, EngineError


@pytest.fixture(scope="module")
def ort_engine(small_model, tmp_path_factory) -> Path:
    """A complete fp32 ONNX Runtime engine directory."""
    built, folder = build(small_model, tmp_path_factory.mktemp("dir"), "onnxruntime", "fp32")
    write_info(folder, built.info)
    return folder


def _copy(engine: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(engine, tmp_path / "engine"))


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_staged_output_leaves_nothing_behind_on_error(tmp_path):
    out = tmp_path / "engine"
    with pytest.raises(RuntimeError):
        with staged_output(out) as staging:
            (staging / "spatial.onnx").write_bytes(b"half")
            raise RuntimeError("build failed")
    assert not out.exists() and _leftovers(tmp_path) == []


def test_staged_output_replaces_an_engine_but_refuses_other_folders(tmp_path, ort_engine):
    engine = _copy(ort_engine, tmp_path)
    with staged_output(engine) as staging:
        (staging / ENGINE_JSON).write_text("{}")
    assert [p.name for p in engine.iterdir()] == [ENGINE_JSON] and _leftovers(tmp_path) == []
    precious = tmp_path / "photos"
    precious.mkdir()
    (precious / "a.jpg").write_bytes(b"x")
    with pytest.raises(EngineError, match="not an engine directory"):
        with staged_output(precious):
            pass
    assert (precious / "a.jpg").exists()


def test_an_unwritable_output_is_one_engine_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(EngineError, match="cannot write the engine"):
        with staged_output(blocker / "engine"):
            pass


def test_read_engine_round_trip(ort_engine):
    info = read_engine(ort_engine)
    assert info.contract == SMALL and info.backend == "onnxruntime" and info.precision == "fp32"
    assert info.tools["onnxruntime"] and info.tensorrt is None


@pytest.mark.parametrize("damage, error, message", [
    ("no-json", EngineError, "not an engine directory"),
    ("bad-json", EngineError, "unreadable engine description"),
    ("bad-format", EngineError, "not a two-stream engine"),
    ("missing-part", EngineError, "the head part"),
    ("bad-contract", ContractMismatch, "invalid model contract"),
    ("other-contract-in-onnx", ContractMismatch, "engine.json says stride 2, spatial.onnx carries 3"),
])
def test_read_engine_refuses_damaged_directories(ort_engine, tmp_path, damage, error, message):
    engine = _copy(ort_engine, tmp_path)
    described = engine / ENGINE_JSON
    data = json.loads(described.read_text())
    if damage == "no-json":
        described.unlink()
    elif damage == "bad-json":
        described.write_text("{not json")
    elif damage == "bad-format":
        described.write_text(json.dumps({**data, "format": "something-else"}))
    elif damage == "missing-part":
        (engine / "head.onnx").unlink()
    elif damage == "bad-contract":
        described.write_text(json.dumps({**data, "contract": {**data["contract"], "flow_method": "magic"}}))
    elif damage == "other-contract-in-onnx":
        tag(engine / "spatial.onnx", replace(SMALL, stride=3), "spatial", "fp32")
    with pytest.raises(error, match=message):
        read_engine(engine)


def test_open_model_refuses_an_engine_for_another_contract(ort_engine):
    with pytest.raises(ContractMismatch, match="different model contract"):
        open_model(ort_engine, expect_contract=replace(SMALL, num_segments=5))


@pytest.mark.parametrize("backend, precision, message", [
    ("tensorrt", "auto", "holds onnxruntime files"),
    ("torch", "auto", "runs checkpoints only"),
    ("auto", "int8", "holds a fp32 engine, not int8"),
])
def test_open_model_refuses_what_an_engine_cannot_run(ort_engine, backend, precision, message):
    with pytest.raises(EngineError, match=message):
        open_model(ort_engine, backend, precision)


def test_a_tensorrt_engine_is_refused_without_tensorrt(ort_engine, tmp_path):
    """Its GPU and TensorRT version are checked before anything loads; here TensorRT is absent."""
    engine = _copy(ort_engine, tmp_path)
    info = read_engine(engine)
    write_info(engine, replace(info, backend="tensorrt", tensorrt=TensorRTTarget("10.16.1", "NVIDIA H100", "9.0")))
    with pytest.raises(EngineError, match="TensorRT is not installed|needs a CUDA GPU"):
        open_model(engine)


@pytest.mark.parametrize("backend, precision", [("auto", "auto"), ("onnxruntime", "fp32"), ("openvino", "auto")])
def test_open_model_opens_an_engine_directory(ort_engine, backend, precision, caplog):
    caplog.set_level("INFO", logger="building.load")
    with open_model(ort_engine, backend, precision) as opened:
        assert opened.contract == SMALL and opened.precision == "fp32" and opened.device == "cpu"
    said = [r.getMessage() for r in caplog.records if r.name == "building.load"]
    assert said[0].startswith("backend: ") if backend == "auto" else said == []  # auto says why


def test_open_model_exports_a_checkpoint_on_the_fly(small_ckpt):
    with open_model(small_ckpt, "onnxruntime", "fp32") as opened:
        assert opened.name == "onnxruntime" and opened.contract == SMALL
    with pytest.raises(EngineError, match="int8 needs a calibrated engine"):
        open_model(small_ckpt, "openvino", "int8")


CUDA = "NVIDIA H100"
CHAIN = [
    # (cuda, tensorrt, openvino, onnxruntime) -> backend, words the reason must contain
    ((CUDA, "10.16.1", "2026.4.1", "1.31.1"), "tensorrt", "TensorRT 10.16.1"),
    ((None, "10.16.1", "2026.4.1", "1.31.1"), "openvino", "no CUDA GPU"),
    ((CUDA, None, "2026.4.1", "1.31.1"), "openvino", "TensorRT not installed"),
    ((None, None, None, "1.31.1"), "onnxruntime", "OpenVINO not installed"),
    ((None, None, None, None), "torch", "OpenVINO not installed; ONNX Runtime not installed; PyTorch"),
]


@pytest.mark.parametrize("runtimes, backend, reason", CHAIN)
def test_the_auto_chain_says_what_it_picked_and_why(runtimes, backend, reason):
    choice = choose_backend(Runtimes(*runtimes))
    assert choice.backend == backend and reason in choice.reason


def test_the_auto_chain_follows_an_engine_directorys_files(ort_engine):
    info = read_engine(ort_engine)
    everything = Runtimes(CUDA, "10.16.1", "2026.4.1", "1.31.1")
    assert choose_backend(everything, info, ".onnx").backend == "openvino"  # never TensorRT for ONNX files
    assert choose_backend(Runtimes(None, None, None, "1.31.1"), info, ".onnx").backend == "onnxruntime"
    plans = choose_backend(everything, replace(info, backend="tensorrt"), ".plan")
    assert plans.backend == "tensorrt" and plans.reason.startswith("the engine directory holds .plan files")
    # Nothing here runs the files: the backend they were built for, whose own check says why.
    assert choose_backend(Runtimes(None, None, None, "1.31.1"), replace(info, backend="openvino"), ".xml") \
        .backend == "openvino"
