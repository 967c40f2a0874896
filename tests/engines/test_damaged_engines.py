"""Engine directories that were edited or damaged after build_engine.py wrote them: every backend
that opens one says what is wrong in one line (folder, field, both values), never a traceback
from deep in a stream. TensorRT's shape reading runs here against a stand-in plan."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from building.load import open_model
from engines.auto import construct
from engines.enginedir import ENGINE_JSON, read_engine, write_info
from engines.onnx_parts import HEAD, SPATIAL, PartShape, check_part_shapes
from engines.tensorrt_backend import plan_shape
from tests.engines.conftest import SMALL, build
from twostream.errors import EngineError, RecognizerError

ROOT = Path(__file__).resolve().parents[2]
# (engine.json contract edit, the error's words for ONNX Runtime's engine and for OpenVINO's).
# ONNX parts carry the contract, so engine.json is compared with it first (the spatial part is
# read first); IR parts have only their shapes to tell.
EDITS = [
    ({"input_size": [48, 48]}, "engine.json says input_size [48, 48], spatial.onnx carries [64, 64]",
     "the contract says input_size [48, 48], spatial.xml has [64, 64]"),
    ({"num_segments": 2}, "engine.json says num_segments 2, spatial.onnx carries 3",
     "the contract says num_segments 2, head.xml has 3"),
    ({"stack_length": 2}, "engine.json says stack_length 2, spatial.onnx carries 3",
     "the contract says stack_length 2 (4 flow channels), temporal.xml has 3 (6 flow channels)"),
    ({"classes": list(SMALL.classes[:8])}, "engine.json says classes [8 names], spatial.onnx carries [10 names]",
     "the contract says classes [8 names], head.xml has 10 outputs"),
]


@pytest.fixture(scope="module")
def engines(small_model, tmp_path_factory) -> dict[str, Path]:
    """fp32 engine directories for ONNX Runtime (.onnx parts) and OpenVINO (IR .xml + .bin)."""
    root = tmp_path_factory.mktemp("damaged")
    folders = {}
    for backend in ("onnxruntime", "openvino"):
        built, folder = build(small_model, root, backend, "fp32")
        write_info(folder, built.info)
        folders[backend] = folder
    return folders


def _copy(engine: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(engine, tmp_path / "engine"))


def _edit(engine: Path, change: dict) -> None:
    described = engine / ENGINE_JSON
    data = json.loads(described.read_text())
    data["contract"].update(change)
    if "classes" in change:
        del data["contract"]["events"]  # the event policy names classes: the defaults for the new list
    described.write_text(json.dumps(data))


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("change, onnx_words, ir_words", EDITS, ids=[next(iter(edit[0])) for edit in EDITS])
def test_an_edited_contract_names_the_field_and_both_values(engines, tmp_path, backend, change, onnx_words,
                                                            ir_words):
    engine = _copy(engines[backend], tmp_path)
    _edit(engine, change)
    with pytest.raises(RecognizerError) as info:
        open_model(engine, backend)
    message = str(info.value)
    assert message.startswith(f"engine directory {engine}: ") and "\n" not in message
    assert (onnx_words if backend == "onnxruntime" else ir_words) in message, message
    assert message.endswith("(engine.json edited, or parts of another build?); rebuild with build_engine.py")


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("change, words", [
    (dict(input_size=(48, 48)), "input_size [48, 48], spatial.onnx has [64, 64]"),
    (dict(stack_length=5), "stack_length 5 (10 flow channels), temporal.onnx has 3 (6 flow channels)"),
    (dict(num_segments=4), "num_segments 4, head.onnx has 3"),
    (dict(classes=SMALL.classes[:6], events=None), "classes [6 names], head.onnx has 10 outputs"),
])
def test_each_backend_checks_the_shapes_of_its_files(engines, backend, change, words):
    """Past the metadata check (a caller with its own contract): the backend itself compares
    the shapes its ONNX files declare, OpenVINO reading the same files as ONNX Runtime."""
    folder = engines["onnxruntime"]
    info = read_engine(folder)
    with pytest.raises(EngineError, match=f"engine directory {folder}: the contract says ") as raised:
        construct(backend, replace(info, contract=replace(SMALL, **change)), info.files(folder))
    assert words in str(raised.value)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_frames_of_another_size_are_refused_on_open(engines, backend):
    """--input-size with --allow-contract-mismatch: a built engine takes its own size only."""
    info = read_engine(engines[backend])
    with pytest.raises(EngineError, match=r"takes \[64, 64\] frames only \(its input_size\), not \[48, 48\]"):
        construct(backend, info, info.files(engines[backend]), input_size=(48, 48))


def test_an_edited_openvino_engine_is_one_line_and_exit_2_from_app(engines, tmp_path):
    engine = _copy(engines["openvino"], tmp_path)
    _edit(engine, {"num_segments": 2})
    done = subprocess.run([sys.executable, "app.py", "--source", "demo", "--no-ui", "--quiet", "--model", str(engine),
                           "--max-frames", "30"], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"error: engine directory {engine}: the contract says num_segments 2, "
                                        "head.xml has 3 (engine.json edited, or parts of another build?); "
                                        "rebuild with build_engine.py"]
    assert done.stdout == ""


def _truncate(path: Path, keep: float = 0.5) -> None:
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])


def test_a_truncated_openvino_bin_names_both_sizes(engines, tmp_path):
    engine = _copy(engines["openvino"], tmp_path)
    weights = engine / "temporal.bin"
    full = weights.stat().st_size
    _truncate(weights)
    with pytest.raises(EngineError) as info:
        open_model(engine)
    assert str(info.value) == (f"{weights} has {full // 2} bytes, temporal.xml needs {full}: truncated or corrupt; "
                               "rebuild with build_engine.py")


@pytest.mark.parametrize("damage, words", [
    ("missing bin", "head.bin is missing (head.xml needs"),
    ("truncated xml", "head.xml is not readable OpenVINO IR ("),  # expat says where it stopped
    ("empty xml", "head.xml is not readable OpenVINO IR"),
])
def test_other_damaged_ir_files_are_one_line(engines, tmp_path, damage, words):
    engine = _copy(engines["openvino"], tmp_path)
    if damage == "missing bin":
        (engine / "head.bin").unlink()
    elif damage == "truncated xml":
        _truncate(engine / "head.xml")
    else:
        (engine / "head.xml").write_text("")
    with pytest.raises(EngineError, match=words.replace("(", r"\(")) as info:
        open_model(engine)
    assert "\n" not in str(info.value) and str(info.value).endswith("rebuild with build_engine.py")


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_a_truncated_onnx_part_is_one_line(engines, tmp_path, backend):
    engine = _copy(engines["onnxruntime"], tmp_path)
    part = engine / "head.onnx"
    _truncate(part)
    with pytest.raises(EngineError) as info:
        open_model(engine, backend)
    assert str(info.value) == (f"{part} ({part.stat().st_size} bytes) is not a readable ONNX model: truncated or "
                               "corrupt; rebuild with build_engine.py")


def test_onnx_runtime_itself_says_truncated(engines, tmp_path):
    """The runner's own open (callers that skip read_engine, e.g. a build's parity check)."""
    engine = _copy(engines["onnxruntime"], tmp_path)
    info = read_engine(engine)
    _truncate(engine / "spatial.onnx", 0.3)
    with pytest.raises(EngineError, match=r"spatial.onnx \(\d+ bytes\) is not a readable ONNX model: truncated"):
        construct("onnxruntime", info, info.files(engine))


def _part(path: str, inputs, output) -> PartShape:
    return PartShape(Path(path), tuple(tuple(s) for s in inputs), tuple(output))


GOOD = (_part("/e/spatial.plan", [(None, 3, 64, 64)], (None, 96, 4, 4)),
        _part("/e/temporal.plan", [(None, 6, 64, 64)], (None, 96, 4, 4)),
        _part("/e/head.plan", [(None, 3, 96, 4, 4)] * 2, (None, 10)))


@pytest.mark.parametrize("which, shape, words", [
    (2, _part("/e/head.plan", [(None, 3, 64, 2, 2)] * 2, (None, 10)),
     r"engine directory /e: spatial.plan gives features \[96, 4, 4\], head.plan takes \[64, 2, 2\] \(parts of "
     r"different builds\?\)"),
    (0, _part("/e/spatial.plan", [(None, 6, 64, 64)], (None, 96, 4, 4)), r"/e/spatial.plan: not a spatial part"),
    (2, _part("/e/head.plan", [(None, 3, 96, 4, 4)], (None, 10)), r"/e/head.plan: not a head part"),
    (1, _part("/e/temporal.plan", [(None, 6, 32, 32)], (None, 96, 4, 4)),
     r"the contract says input_size \[64, 64\], temporal.plan has \[32, 32\]"),
])
def test_parts_that_do_not_fit_each_other(which, shape, words):
    parts = list(GOOD)
    check_part_shapes(SMALL, SMALL.input_size, *parts)  # the good set passes
    parts[which] = shape
    with pytest.raises(EngineError, match=words):
        check_part_shapes(SMALL, SMALL.input_size, *parts)


def test_a_tensorrt_plans_shapes_are_read_with_free_batch_axes():
    """Against a stand-in deserialised engine with TensorRT's API (names, -1 for dynamic axes)."""
    dims = {"spatial_features": (-1, 5, 96, 4, 4), "temporal_features": (-1, 5, 96, 4, 4), "logits": (-1, 10)}
    names = list(dims)
    engine = SimpleNamespace(num_io_tensors=len(names), get_tensor_name=names.__getitem__,
                             get_tensor_shape=lambda name: list(dims[name]))
    shape = plan_shape(engine, HEAD, Path("/e/head.plan"))
    assert shape == _part("/e/head.plan", [(None, 5, 96, 4, 4)] * 2, (None, 10))
    with pytest.raises(EngineError, match=r"the contract says num_segments 3, head.plan has 5"):
        check_part_shapes(SMALL, SMALL.input_size, *GOOD[:2], shape)
    with pytest.raises(EngineError, match=r"no tensors named \['features', 'rgb'\] \(not a spatial plan\?\)"):
        plan_shape(engine, SPATIAL, Path("/e/spatial.plan"))
