"""The training command end to end on tiny data: generated clips, a folder of clips, resume."""

import json

import cv2
import numpy as np
import pytest
import torch

import train
from twostream.checkpoint import read_checkpoint
from twostream.errors import DataError

TINY = ["--input-size", "48", "--stack-length", "2", "--segments", "2", "--stride", "2", "--frames", "12",
        "--batch", "8", "--samples-per-clip", "2", "--per-clip", "2", "--workers", "1",
        "--head-clips-per-class", "1"]


def _fit(tmp_path, *extra):
    out = tmp_path / "m.pt"
    code = train.main(["fit", "--out", str(out), *TINY, *extra])
    assert code == 0
    return out


def test_fit_on_generated_clips_writes_a_model_with_its_report(tmp_path, capsys):
    out = _fit(tmp_path, "--clips-per-class", "1", "--val-clips-per-class", "1",
               "--tower-epochs", "1", "--head-epochs", "1")
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["windows"] == 20 and len(report["confusion"]) == 10
    assert sum(map(sum, report["confusion"])) == 20
    checkpoint = read_checkpoint(out)
    assert checkpoint.train_state["stage"] == "done"
    assert checkpoint.metrics["held_out"]["top1_fused"] == report["top1_fused"]
    assert checkpoint.metrics["flops"]["per_frame_gflops_hop1"] > 0
    assert "train.py fit" in checkpoint.metrics["recipe"]["command"]
    # The head trains on its own clips, unseen by the towers (seed + 500).
    assert "head 1 clips/class (seed 500)" in checkpoint.metrics["recipe"]["data"]
    assert train.main(["card", "--model", str(out)]) == 0
    card = out.with_suffix(".md").read_text()
    assert f"| fused (conv) | {report['top1_fused']:.4f} |" in card
    assert "train.py fit --out" in card and "GFLOPs per window" in card


def test_resume_continues_from_the_saved_epoch(tmp_path, capsys):
    out = _fit(tmp_path, "--clips-per-class", "1", "--val-clips-per-class", "1",
               "--tower-epochs", "2", "--head-epochs", "1")
    # Simulate a run interrupted after tower epoch 1: its checkpoint says so.
    payload = torch.load(out, weights_only=True)
    payload["train_state"] = {"stage": "towers", "epoch": 1}
    payload["metrics"] = {"history": payload["metrics"]["history"][:1]}
    torch.save(payload, out)
    assert train.main(["fit", "--resume", str(out), "--out", str(out), *TINY, "--clips-per-class", "1",
                       "--val-clips-per-class", "1", "--tower-epochs", "2", "--head-epochs", "1"]) == 0
    history = read_checkpoint(out).metrics["history"]
    assert [(h["stage"], h["epoch"]) for h in history] == [("towers", 1), ("towers", 2), ("head", 1)]
    assert "resuming" in capsys.readouterr().err


def _write_clip(path, direction: int, seed: int):
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    x = 10 if direction > 0 else 50
    for _ in range(14):
        frame = np.full((48, 64, 3), 60, np.uint8) + rng.integers(0, 20, (48, 64, 3), dtype=np.uint8)
        cv2.circle(frame, (int(x), 24), 6, (255, 255, 255), -1)
        writer.write(frame)
        x += 2 * direction
    writer.release()


def test_fit_and_evaluate_on_a_folder_of_labelled_clips(tmp_path, capsys):
    data = tmp_path / "data"
    for name, direction in (("left", -1), ("right", 1)):
        (data / name).mkdir(parents=True)
        for i in range(5):
            _write_clip(data / name / f"c{i}.avi", direction, i)
    out = _fit(tmp_path, "--data", str(data), "--tower-epochs", "1", "--head-epochs", "1")
    checkpoint = read_checkpoint(out)
    assert checkpoint.contract.classes == ("left", "right")
    capsys.readouterr()
    assert train.main(["evaluate", "--model", str(out), "--data", str(data), "--per-clip", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["clips"] == 2 and report["classes"] == ["left", "right"]


def test_bad_data_folder_is_one_error(tmp_path, capsys):
    (tmp_path / "only_one_class").mkdir()
    assert train.main(["fit", "--out", str(tmp_path / "m.pt"), "--data", str(tmp_path), *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "at least two class sub-folders" in err[0]
    with pytest.raises(DataError):
        raise DataError("typed")
