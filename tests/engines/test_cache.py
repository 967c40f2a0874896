"""Build once, run cheap: a model file is exported and compiled once per (bytes, backend,
precision, tools) into the engine cache; later starts and every extra runner
only open the cached files. Plus the one table of backends and precisions."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import torch

import app
import bench
import build_engine
import building.cache
from building.cache import CACHE_JSON, CacheKey, default_cache_dir
from building.load import prepare_model
from engines.enginedir import ENGINE_JSON, staged_output
from engines.table import BACKEND_CHOICES, ENGINE_BACKENDS, ENGINE_PRECISIONS, PRECISION_CHOICES, check_request
from tests.engines.conftest import SMALL
from twostream.checkpoint import save_checkpoint
from twostream.errors import EngineError


@pytest.fixture
def builds(monkeypatch):
    """Counts the exports+compiles (building.builder.build_parts calls) the cache makes."""
    calls = []
    real = building.cache.build_parts

    def counting(*args, **kwargs):
        calls.append(args[2].backend)
        return real(*args, **kwargs)

    monkeypatch.setattr(building.cache, "build_parts", counting)
    return calls


def _logits(runner) -> np.ndarray:
    rgb = np.full((1, 3, *SMALL.input_size), 128, np.float32)
    return runner.spatial(rgb).copy()


def test_a_second_start_and_a_second_tab_build_nothing(small_ckpt, tmp_path, builds):
    first = prepare_model(small_ckpt, "onnxruntime", "fp32", cache_dir=tmp_path)
    assert builds == ["onnxruntime"] and first.engine_dir.parent == tmp_path
    second = prepare_model(small_ckpt, "onnxruntime", "fp32", cache_dir=tmp_path)  # a second start
    assert builds == ["onnxruntime"] and second.engine_dir == first.engine_dir
    with second.open() as tab1, second.open() as tab2:  # two tabs: two runners, no build
        assert tab1 is not tab2 and (tab1.name, tab1.precision, tab1.device) == ("onnxruntime", "fp32", "cpu")
        np.testing.assert_array_equal(_logits(tab1), _logits(tab2))
    assert builds == ["onnxruntime"]
    assert [p.name for p in tmp_path.iterdir()] == [first.engine_dir.name]  # no staging folders left


def test_the_key_is_the_model_files_bytes(small_ckpt, small_model, tmp_path):
    same = tmp_path / "copy.pt"
    shutil.copyfile(small_ckpt, same)
    key = CacheKey.of(small_ckpt, "openvino", "fp32")
    assert CacheKey.of(same, "openvino", "fp32") == key  # the path does not matter
    assert CacheKey.of(small_ckpt, "openvino", "fp16").folder != key.folder
    assert CacheKey.of(small_ckpt, "onnxruntime", "fp32").folder != key.folder
    changed = tmp_path / "changed.pt"
    with torch.no_grad():
        weights = {k: v.clone() for k, v in small_model.state_dict().items()}
        next(iter(small_model.parameters())).add_(1.0)
        save_checkpoint(changed, small_model)
        small_model.load_state_dict(weights)  # the session-wide fixture stays as it was
    assert CacheKey.of(changed, "openvino", "fp32").folder != key.folder
    assert key.folder.startswith(key.model_sha256[:16]) and "-openvino-fp32-" in key.folder


@pytest.mark.parametrize("damage", ["truncated-part", "no-record", "bad-json", "other-key"])
def test_a_damaged_entry_is_rebuilt_never_used(small_ckpt, tmp_path, builds, caplog, damage):
    good = prepare_model(small_ckpt, "onnxruntime", "fp32", cache_dir=tmp_path)
    with good.open() as runner:
        expected = _logits(runner)
    entry = good.engine_dir
    if damage == "truncated-part":
        part = entry / "spatial.onnx"
        part.write_bytes(part.read_bytes()[:1000])
    elif damage == "no-record":
        (entry / CACHE_JSON).unlink()
    elif damage == "bad-json":
        (entry / ENGINE_JSON).write_text("{half")
    elif damage == "other-key":
        record = json.loads((entry / CACHE_JSON).read_text())
        record["key"]["tools"]["onnxruntime"] = "0.0.1"
        (entry / CACHE_JSON).write_text(json.dumps(record))
    caplog.set_level(logging.WARNING, logger="building.cache")
    again = prepare_model(small_ckpt, "onnxruntime", "fp32", cache_dir=tmp_path)
    assert builds == ["onnxruntime", "onnxruntime"] and again.engine_dir == entry
    assert any("rebuilding" in r.getMessage() for r in caplog.records)
    with again.open() as runner:
        np.testing.assert_allclose(_logits(runner), expected, rtol=1e-5, atol=1e-5)


def test_torch_loads_the_file_once(small_ckpt, tmp_path, builds):
    path = tmp_path / "model.pt"
    shutil.copyfile(small_ckpt, path)
    prepared = prepare_model(path, "torch", "auto", cache_dir=tmp_path / "cache")
    path.unlink()  # runners come from the loaded model, not the file
    with prepared.open() as one, prepared.open() as two:
        assert (one.name, one.precision, prepared.precision) == ("torch", "fp32", "fp32")
        np.testing.assert_array_equal(_logits(one), _logits(two))
    assert builds == [] and not (tmp_path / "cache").exists()


def test_racing_builders_leave_one_whole_entry(tmp_path):
    entry = tmp_path / "entry"
    with staged_output(entry, replace=False) as slow:
        (slow / ENGINE_JSON).write_text("slow")
        with staged_output(entry, replace=False) as fast:
            (fast / ENGINE_JSON).write_text("fast")
    assert (entry / ENGINE_JSON).read_text() == "fast"  # the first one in wins, the other is dropped
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]


def test_the_default_cache_is_the_users_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "twostream-recognizer" / "engines"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "twostream-recognizer" / "engines"


def _choices(parser, option):
    return next(a.choices for a in parser._actions if option in a.option_strings)


def test_the_commands_choices_come_from_the_table():
    assert BACKEND_CHOICES == ("auto", "tensorrt", "openvino", "onnxruntime", "torch")
    assert set(PRECISION_CHOICES) == {"auto", "fp32", "fp16", "bf16", "int8"}
    for parser in (app.build_parser(), bench.build_parser()):
        assert tuple(_choices(parser, "--backend")) == BACKEND_CHOICES
        assert tuple(_choices(parser, "--precision")) == PRECISION_CHOICES
    assert tuple(_choices(build_engine.build_parser(), "--backend")) == ENGINE_BACKENDS
    assert tuple(_choices(build_engine.build_parser(), "--precision")) == ENGINE_PRECISIONS == ("fp32", "fp16", "int8")


@pytest.mark.parametrize("backend, precision, message", [
    ("tensorflow", "auto", "unknown backend 'tensorflow'"),
    ("auto", "fp8", "unknown precision 'fp8'"),
    ("torch", "int8", "torch runs fp32, bf16, fp16, not int8"),
    ("onnxruntime", "bf16", "onnxruntime runs fp32, fp16, int8, not bf16"),
])
def test_one_clear_line_for_what_the_table_refuses(small_ckpt, tmp_path, backend, precision, message):
    with pytest.raises(EngineError, match=message):
        check_request(backend, precision)
    with pytest.raises(EngineError, match=message):
        prepare_model(small_ckpt, backend, precision, cache_dir=tmp_path)
