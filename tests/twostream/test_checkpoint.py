"""Model files: round trip, and one clear error for every kind of bad file."""

import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from twostream.checkpoint import load_model, read_checkpoint, save_checkpoint
from twostream.contract import GESTURE_CLASSES, ModelContract
from twostream.errors import CheckpointError
from twostream.model import TwoStreamNet
from twostream.training import Progress

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    model = TwoStreamNet(ModelContract(classes=GESTURE_CLASSES, input_size=(64, 64))).eval()
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, model, metrics={"note": "test"})
    return model, path


def test_round_trip_keeps_weights_and_contract(saved):
    model, path = saved
    loaded, checkpoint = load_model(path)
    assert checkpoint.contract == model.contract
    assert checkpoint.metrics["note"] == "test"
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)


def _truncated(path: Path, tmp: Path) -> Path:
    out = tmp / "truncated.pt"
    out.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return out


def _garbage(path: Path, tmp: Path) -> Path:
    out = tmp / "garbage.pt"
    out.write_bytes(b"this is not a model" * 100)
    return out


def _foreign(path: Path, tmp: Path) -> Path:
    out = tmp / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(3)}}, out)
    return out


def _mismatched(path: Path, tmp: Path) -> Path:
    out = tmp / "mismatch.pt"
    payload = torch.load(path, weights_only=True)
    payload["contract"]["backbone"] = "resnet18"  # weights are for 'tiny'
    torch.save(payload, out)
    return out


def _bad_contract(path: Path, tmp: Path) -> Path:
    out = tmp / "badcontract.pt"
    payload = torch.load(path, weights_only=True)
    payload["contract"]["flow_method"] = "magic"
    torch.save(payload, out)
    return out


def _pickled_code(path: Path, tmp: Path) -> Path:
    out = tmp / "code.pt"
    torch.save({"format": "twostream-checkpoint", "obj": Path("x")}, out)  # needs unpickling a class
    return out


def _bad_train_state(path: Path, tmp: Path) -> Path:
    out = tmp / "badtrainstate.pt"
    payload = torch.load(path, weights_only=True)
    payload["train_state"] = ["towers", 1]
    torch.save(payload, out)
    return out


def _text(path: Path, tmp: Path) -> Path:
    out = tmp / "notes.pt"
    out.write_text("my notes about the model\n" * 40)
    return out


def _empty(path: Path, tmp: Path) -> Path:
    out = tmp / "empty.pt"
    out.write_bytes(b"")
    return out


def _foreign_pickle(path: Path, tmp: Path) -> Path:
    out = tmp / "data.pkl"
    out.write_bytes(pickle.dumps({"weights": [1, 2, 3]}, protocol=4))  # not torch.save's format
    return out


def _truncated_legacy(path: Path, tmp: Path) -> Path:
    out = tmp / "legacy.pt"
    torch.save(torch.load(path, weights_only=True), out, _use_new_zipfile_serialization=False)
    out.write_bytes(out.read_bytes()[:40])
    return out


@pytest.mark.parametrize("make,message", [
    (_truncated, r"is not a readable model checkpoint \(a zip archive; truncated or corrupt: PytorchStreamReader"),
    (_garbage, r"is not a model checkpoint of this project \(a text file\)"),
    (_text, r"is not a model checkpoint of this project \(a text file\)"),
    (_empty, r"is not a model checkpoint of this project \(an empty file\)"),
    (_foreign_pickle, r"\(a pickle; truncated, corrupt or not written by torch.save: Unsupported operand"),
    (_truncated_legacy, r"\(a pickle; truncated or corrupt"),
    (_foreign, "not a two-stream checkpoint"),
    (_mismatched, "does not match the model code"),
    (_bad_contract, "flow_method 'magic'"),
    (_pickled_code, r"\(a zip archive; it holds a pathlib.PosixPath object, not only tensors and plain data; "
                    r"refused, as loading it could run code\)"),
    (_bad_train_state, "train_state is a list"),
])
def test_bad_files_raise_one_checkpoint_error(saved, tmp_path, make, message):
    bad = make(saved[1], tmp_path)
    with pytest.raises(CheckpointError, match=message) as info:
        load_model(bad)
    assert "\n" not in str(info.value) and len(str(info.value).replace(str(bad), "")) < 300
    assert "weights_only" not in str(info.value)  # torch's advice to load it unsafely never reaches the user
    assert isinstance(info.value, ValueError)


def test_binary_junk_is_named_as_neither_zip_nor_pickle(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(1, 256)) * 4)
    with pytest.raises(CheckpointError, match=r"\(binary data, neither a zip archive nor a pickle\)"):
        read_checkpoint(junk)


def test_shipped_model_from_before_exact_resume_still_loads():
    """models/demo.pt keeps the old, small train_state: a finished model carries no optimizer."""
    path = ROOT / "models" / "demo.pt"
    if not path.is_file():
        pytest.skip("models/demo.pt is absent")
    _, checkpoint = load_model(path)
    assert checkpoint.train_state == {"stage": "done", "epoch": 0}
    assert Progress.from_train_state(checkpoint.train_state) == Progress("done", 0)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="model file not found"):
        read_checkpoint(tmp_path / "nope.pt")


def test_cli_prints_one_error_line_and_exits_nonzero(saved, tmp_path):
    bad = _truncated(saved[1], tmp_path)
    proc = subprocess.run([sys.executable, "train.py", "evaluate", "--model", str(bad)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "truncated" in lines[0]


def test_a_text_file_as_model_is_one_short_line_without_torchs_advice(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("a,b,c\n1,2,3\n")
    proc = subprocess.run([sys.executable, "app.py", "--no-ui", "--source", "demo", "--model", str(notes)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"error: {notes} is not a model checkpoint of this project (a text file); "
                                        "model checkpoints are written by train.py"]
