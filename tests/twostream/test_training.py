"""The training command end to end on tiny data: generated clips, a folder of clips, exact resume."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import train
from trainer import common as train_common, fit as train_fit
from twostream.checkpoint import read_checkpoint, save_checkpoint
from twostream.contract import GESTURE_CLASSES, ModelContract
from twostream.errors import DataError
from twostream.model import TwoStreamNet

TINY = ["--input-size", "48", "--stack-length", "2", "--segments", "2", "--stride", "2", "--frames", "12",
        "--batch", "8", "--samples-per-clip", "2", "--per-clip", "2", "--workers", "1",
        "--head-clips-per-class", "1", "--no-real"]


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


def test_fine_tuning_keeps_the_models_compensation_unless_given_another(tmp_path):
    """--init takes the model's contract; --flow-compensation given with it fine-tunes the same
    weights to another compensation (say from mean subtraction to affine), and the
    recipe names the file it started from."""
    start = tmp_path / "start.pt"
    save_checkpoint(start, TwoStreamNet(ModelContract(classes=GESTURE_CLASSES, input_size=(48, 48), stack_length=2,
                                                      num_segments=2, stride=2, flow_compensation="mean")))
    quick = ["--clips-per-class", "1", "--val-clips-per-class", "1", "--tower-epochs", "1", "--head-epochs", "1"]
    for given, expected in (([], "mean"), (["--flow-compensation", "affine"], "affine")):
        out = tmp_path / f"{expected}.pt"
        assert train.main(["fit", "--init", str(start), "--out", str(out), *TINY, *quick, *given]) == 0
        tuned = read_checkpoint(out)
        assert tuned.contract.flow_compensation == expected
        assert tuned.metrics["recipe"]["initialised_from"]["file"] == str(start)
    # A fine-tune of a fine-tune: the card names both models it came from, newest first.
    again = tmp_path / "again.pt"
    assert train.main(["fit", "--init", str(tmp_path / "affine.pt"), "--out", str(again), *TINY, *quick]) == 0
    assert train.main(["card", "--model", str(again)]) == 0
    lineage = [line for line in again.with_suffix(".md").read_text().splitlines() if line.startswith("- initialised from")]
    assert [line.split("`")[1] for line in lineage] == [str(tmp_path / "affine.pt"), str(start)]


# Two epochs per stage, so that each stage can be interrupted half way.
EXACT = [*TINY, "--clips-per-class", "1", "--val-clips-per-class", "1", "--tower-epochs", "2", "--head-epochs", "2"]


def _generate_once(monkeypatch):
    """Render each generated clip set once per test: the runs compared here share their clips, and
    rendering them again for every run would take longer than the training."""
    rendered = {}
    real = train_common.generate_clips

    def generate(contract, clips_per_class, seed, **kwargs):
        key = (contract, clips_per_class, seed, tuple(sorted(kwargs.items())))
        if key not in rendered:
            rendered[key] = real(contract, clips_per_class, seed, **kwargs)
        return rendered[key]

    monkeypatch.setattr(train_common, "generate_clips", generate)


def _interrupt_after(monkeypatch, point: tuple[str, int] | None):
    """Stop the run as Ctrl-C would, right after it writes the checkpoint whose train_state is
    ``point`` (stage, epoch); None lets it run to the end."""

    def save(path, model, metrics=None, train_state=None):
        save_checkpoint(path, model, metrics=metrics, train_state=train_state)
        if (train_state["stage"], train_state["epoch"]) == point:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_fit, "save_checkpoint", save)


def _weights_equal(a: dict, b: dict) -> bool:
    assert a.keys() == b.keys()
    return all(torch.allclose(a[k].double(), b[k].double()) for k in a)


def test_interrupted_run_resumes_exactly(tmp_path, monkeypatch, capsys, one_thread):
    _generate_once(monkeypatch)
    expected = read_checkpoint(_fit(tmp_path, *EXACT))
    assert expected.train_state == {"stage": "done", "epoch": 0}  # the shipped file carries no optimizer
    # One run interrupted three times: mid towers, between the stages, mid head.
    out = tmp_path / "interrupted.pt"
    points = [("towers", 1), ("head", 0), ("head", 1)]
    _interrupt_after(monkeypatch, points[0])
    assert train.main(["fit", "--out", str(out), *EXACT]) == 130
    mid_towers = torch.load(out, weights_only=True)
    assert {"optimizer", "scheduler", "torch_rng"} <= mid_towers["train_state"].keys()
    for point, stop in zip(points, points[1:] + [None]):
        _interrupt_after(monkeypatch, stop)
        assert train.main(["fit", "--resume", str(out), "--out", str(out), *EXACT]) == (130 if stop else 0)
        assert f"resuming {out} at stage {point[0]}, epoch {point[1]}" in capsys.readouterr().err
    resumed = read_checkpoint(out)
    assert resumed.state_dict.keys() == expected.state_dict.keys()
    for key, value in expected.state_dict.items():
        torch.testing.assert_close(resumed.state_dict[key], value, msg=lambda m: f"{key}: {m}")
    assert resumed.metrics["history"] == expected.metrics["history"]
    assert resumed.metrics["held_out"] == expected.metrics["held_out"]
    assert resumed.train_state == {"stage": "done", "epoch": 0}
    # The check can fail: the same resume with AdamW's moments started afresh ends elsewhere.
    _interrupt_after(monkeypatch, None)
    monkeypatch.setattr(torch.optim.AdamW, "load_state_dict", lambda self, state: None)
    torch.save(mid_towers, out)
    assert train.main(["fit", "--resume", str(out), "--out", str(out), *EXACT]) == 0
    assert not _weights_equal(read_checkpoint(out).state_dict, expected.state_dict)


def test_checkpoint_without_optimizer_state_is_not_resumed_inexactly(tmp_path, capsys):
    old = tmp_path / "old.pt"
    model = TwoStreamNet(ModelContract(classes=GESTURE_CLASSES, input_size=(48, 48)))
    for stage, epoch in (("towers", 1), ("head", 0)):  # as written before exact resume: stage and epoch only
        save_checkpoint(old, model, train_state={"stage": stage, "epoch": epoch})
        assert train.main(["fit", "--resume", str(old), "--out", str(old), *EXACT]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(old) in err[0] and "cannot be resumed exactly" in err[0]
    save_checkpoint(old, model)  # no train_state at all: not a run to continue
    assert train.main(["fit", "--resume", str(old), "--out", str(old), *EXACT]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nothing to resume" in err[0]


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


REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "videos" / "real"


@pytest.mark.slow  # about 45 s on 2 cores: decodes the training files, trains 1 + 1 epochs
@pytest.mark.skipif(not REAL.is_dir(), reason=f"no real footage in {REAL}")
def test_fit_with_real_footage_records_the_split_in_recipe_and_card(tmp_path, capsys):
    out = tmp_path / "m.pt"
    argv = ["fit", "--out", str(out), *[a for a in TINY if a != "--no-real"], "--real", str(REAL),
            "--real-clips-per-file", "1", "--clips-per-class", "1", "--val-clips-per-class", "1",
            "--tower-epochs", "1", "--head-epochs", "1"]
    assert train.main(argv) == 0
    real = read_checkpoint(out).metrics["recipe"]["real"]
    assert real["clips_per_file"] == 1 and real["clips_per_stage"] == len(real["train_files"])
    assert "asl_eat.mkv" in real["val_files"] and "asl_again.mkv" in real["train_files"]
    assert not set(real["train_files"]) & set(real["val_files"])
    assert train.main(["card", "--model", str(out)]) == 0
    card = out.with_suffix(".md").read_text()
    assert "validation files (never trained on): " in card and "one-by-one-person-detection.mp4" in card


def test_extra_real_footage_only_trains_and_is_recorded(tmp_path, capsys):
    real, extra = tmp_path / "real", tmp_path / "extra"
    real.mkdir(), extra.mkdir()
    # Synthetic stand-ins under names the split table lists: one training file, one validation file.
    for folder, name, seed in ((real, "asl_again.mkv", 0), (real, "asl_eat.mkv", 1), (extra, "walkers.avi", 2)):
        _write_clip(folder / name, 1, seed)
    out = tmp_path / "m.pt"
    argv = ["fit", "--out", str(out), *[a for a in TINY if a != "--no-real"], "--real", str(real),
            "--extra-real", str(extra), "--real-clips-per-file", "1", "--clips-per-class", "1",
            "--val-clips-per-class", "1", "--tower-epochs", "1", "--head-epochs", "1"]
    assert train.main(argv) == 0
    recipe = read_checkpoint(out).metrics["recipe"]["real"]
    assert recipe["train_files"] == ["asl_again.mkv"] and recipe["val_files"] == ["asl_eat.mkv"]
    assert recipe["extra_train_files"] == [str(extra / "walkers.avi")] and recipe["clips_per_stage"] == 2
    assert train.main(["card", "--model", str(out)]) == 0
    assert f"(`--extra-real`): {extra / 'walkers.avi'}" in out.with_suffix(".md").read_text()
    capsys.readouterr()
    (tmp_path / "empty").mkdir()
    for bad, says in ((["--extra-real", str(tmp_path / "empty")], "no video files in"),
                      (["--extra-real", str(real)], "holds validation files, which never train: "
                                                    f"{real / 'asl_eat.mkv'}"),
                      (["--extra-real", str(extra), "--no-real"], "contradict")):
        assert train.main(["fit", "--out", str(tmp_path / "n.pt"), "--real", str(real), *TINY[:-1], *bad]) == 2
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and says in errors[0], errors
