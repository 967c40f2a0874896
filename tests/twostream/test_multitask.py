"""Multi-task training (Simonyan and Zisserman 2014): one classifier per dataset on the temporal
tower, UCF101 + HMDB51, the sum of the losses; the second classifier saved and evaluated."""

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

import train
from tests.twostream.dataset_layouts import HMDB_CLASSES, UCF_CLASSES, write_hmdb51, write_ucf101
from twostream.checkpoint import FORMAT, VERSION, build_model, read_checkpoint, save_checkpoint
from twostream.contract import ModelContract, TaskHead
from twostream.data import Clip, ClipSet
from twostream.errors import ContractMismatch
from twostream.model import TwoStreamNet
from twostream.multitask import evaluate_task, multitask_loss, task_batch_size, task_contract, with_task
from twostream.training import Progress, TowerClassifiers, TrainSettings, train_towers

TINY = ["--input-size", "32", "--stack-length", "2", "--segments", "2", "--stride", "2", "--batch", "4",
        "--samples-per-clip", "2", "--per-clip", "2", "--workers", "1", "--no-real", "--tower-epochs", "1",
        "--head-epochs", "1", "--flow", "dis-ultrafast"]
CONTRACT = ModelContract(classes=("a", "b", "c"), backbone="tiny", input_size=(32, 32), stack_length=2,
                         num_segments=2, stride=2)


def _clips(classes, count, seed, frames=10) -> ClipSet:
    rng = np.random.default_rng(seed)
    return ClipSet(tuple(Clip(rng.integers(0, 256, (frames, 3, 32, 32), dtype=np.uint8),
                              rng.integers(100, 156, (frames, 2, 32, 32), dtype=np.uint8), i % len(classes))
                         for i in range(count)), tuple(classes))


def test_the_loss_is_each_classifiers_loss_on_its_own_samples_summed():
    torch.manual_seed(0)
    ce = nn.CrossEntropyLoss()
    spatial, temporal, labels = torch.randn(4, 3), torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    task, task_labels = torch.randn(2, 5, requires_grad=True), torch.tensor([4, 1])
    loss = multitask_loss(ce, spatial, temporal, labels, task, task_labels)
    expected = ce(spatial, labels) + ce(temporal, labels) + ce(task, task_labels)
    assert torch.allclose(loss, expected)
    assert not torch.allclose(loss, multitask_loss(ce, spatial, temporal, labels, task, torch.tensor([0, 1])))
    # Through the model: the second classifier learns from the second batch only, the
    # primary's temporal classifier from the primary batch only.
    model = TwoStreamNet(with_task(CONTRACT, "hmdb51", ("x", "y")))
    rgb, flow, task_flow = torch.rand(3, 3, 32, 32) * 255, torch.rand(3, 4, 32, 32) * 255, torch.rand(2, 4, 32, 32) * 255
    _, t_logits, task_logits = TowerClassifiers(model)(rgb, flow, task_flow)
    assert t_logits.shape == (3, 3) and task_logits.shape == (2, 2)
    ce(task_logits, torch.tensor([0, 1])).backward()
    assert model.head.temporal_fc.weight.grad is None and model.multitask_temporal_fc.weight.grad.abs().sum() > 0


def test_the_second_batch_is_in_proportion_to_the_training_sets():
    assert task_batch_size(9537, 3570, 64) == 24  # UCF101 and HMDB51 split 1
    assert task_batch_size(10, 10, 8) == 8 and task_batch_size(1000, 1, 8) == 1


def test_the_contract_records_the_second_dataset_and_old_contracts_still_load():
    contract = with_task(CONTRACT, "hmdb51", HMDB_CLASSES)
    data = json.loads(contract.to_json())
    assert data["multitask"] == {"dataset": "hmdb51", "classes": list(HMDB_CLASSES)}
    assert ModelContract.from_dict(data).multitask == TaskHead("hmdb51", HMDB_CLASSES)
    assert contract == CONTRACT  # off the run-time graph: engines and the runtime see the same model
    assert task_contract(contract).classes == HMDB_CLASSES and task_contract(contract).multitask is None
    old = CONTRACT.to_dict()
    del old["multitask"]
    assert ModelContract.from_dict(old).multitask is None
    with pytest.raises(ContractMismatch, match="multitask classes must be >= 2 distinct"):
        ModelContract.from_dict({**data, "multitask": {"dataset": "hmdb51", "classes": ["x"]}})
    with pytest.raises(ContractMismatch, match="not trained multi-task"):
        task_contract(CONTRACT)


def test_a_model_file_without_the_second_classifier_still_loads(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "old.pt"
    contract = CONTRACT.to_dict()
    del contract["multitask"]  # a file written before multi-task training
    state = {k: v.clone() for k, v in TwoStreamNet(CONTRACT).state_dict().items()}
    torch.save({"format": FORMAT, "version": VERSION, "contract": contract, "state_dict": state}, path)
    model = build_model(read_checkpoint(path))
    assert model.multitask_temporal_fc is None
    assert not any("multitask" in k for k in model.state_dict())


def test_towers_train_the_second_classifier_and_leave_the_spatial_tower_as_a_plain_run(one_thread):
    """The primary batches are a plain run's (the second dataset draws from its own generator), so
    the spatial tower, which learns the primary alone, ends exactly as without multi-task."""
    primary, second = _clips(("a", "b", "c"), 6, 0), _clips(("x", "y"), 4, 1)
    settings = TrainSettings(tower_epochs=1, tower_batch=4, samples_per_clip=2)
    runs = {}
    for name, contract, task in (("plain", CONTRACT, None), ("multi", with_task(CONTRACT, "hmdb51", ("x", "y")), second)):
        torch.manual_seed(0)
        model = TwoStreamNet(contract)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        figures = []
        train_towers(model, primary, settings, Progress(), lambda p, f: figures.append(f), task=task)
        runs[name] = before, model.state_dict(), figures[0]
    before, after, figures = runs["multi"]
    assert not torch.equal(before["multitask_temporal_fc.weight"], after["multitask_temporal_fc.weight"])
    assert 0 <= figures["task_temporal_train_acc"] <= 1
    assert "task_temporal_train_acc" not in runs["plain"][2]
    plain = runs["plain"][1]
    for key in plain:
        if key.startswith(("spatial_tower.", "head.spatial_fc.")):
            assert torch.equal(plain[key], after[key]), key
    assert not torch.equal(plain["head.temporal_fc.weight"], after["head.temporal_fc.weight"])


def test_a_multitask_run_resumes_exactly(one_thread):
    primary, second = _clips(("a", "b", "c"), 6, 0), _clips(("x", "y"), 4, 1)
    settings = TrainSettings(tower_epochs=2, tower_batch=4, samples_per_clip=2)
    contract = with_task(CONTRACT, "hmdb51", ("x", "y"))
    torch.manual_seed(0)
    start = TwoStreamNet(contract).state_dict()
    saved = []

    def keep(progress, figures):  # what a checkpoint holds after each epoch
        saved.append((copy.deepcopy(progress), copy.deepcopy(model.state_dict())))

    model = TwoStreamNet(contract)
    model.load_state_dict(start)
    train_towers(model, primary, settings, Progress(), keep, task=second)
    straight = model.state_dict()
    model = TwoStreamNet(contract)
    model.load_state_dict(saved[0][1])
    train_towers(model, primary, settings, saved[0][0], keep, task=second)
    for key, value in straight.items():
        assert torch.equal(value, model.state_dict()[key]), key


def _fit(tmp_path, capsys, name, *extra):
    out = tmp_path / name
    assert train.main(["fit", "--out", str(out), *TINY, *extra]) == 0
    capsys.readouterr()
    return out


def test_fit_on_ucf101_and_hmdb51_saves_the_second_head_and_evaluate_scores_it(tmp_path, capsys):
    ucf, hmdb = write_ucf101(tmp_path / "UCF-101"), write_hmdb51(tmp_path / "hmdb51")
    primary = ["--dataset", "ucf101", "--root", str(ucf)]
    out = _fit(tmp_path, capsys, "multi.pt", *primary, "--multitask-dataset", "hmdb51", "--multitask-root", str(hmdb))
    checkpoint = read_checkpoint(out)
    assert checkpoint.contract.classes == UCF_CLASSES  # the contract stays the primary dataset's
    assert checkpoint.contract.multitask == TaskHead("hmdb51", HMDB_CLASSES)
    assert checkpoint.state_dict["multitask_temporal_fc.weight"].shape[0] == len(HMDB_CLASSES)
    recipe = checkpoint.metrics["recipe"]["multitask"]
    assert recipe["dataset"] == "hmdb51" and "hmdb51 split 1 train list" in recipe["data"]
    assert "task_temporal_train_acc" in checkpoint.metrics["history"][0]
    assert checkpoint.metrics["held_out"]["classes"] == list(UCF_CLASSES)
    assert train.main(["card", "--model", str(out)]) == 0
    assert "the temporal tower also learnt hmdb51 split 1 train list" in out.with_suffix(".md").read_text()
    capsys.readouterr()

    evaluate = ["evaluate", "--model", str(out), "--dataset", "hmdb51", "--root", str(hmdb), "--task", "hmdb51",
                "--per-clip", "2"]
    assert train.main(evaluate) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["task"] == "hmdb51" and report["classes"] == list(HMDB_CLASSES) and report["clips"] == 2
    model = build_model(checkpoint)
    # Evaluate reads the second classifier: biased to one class, every window predicts it.
    for cls in range(len(HMDB_CLASSES)):
        with torch.no_grad():
            model.multitask_temporal_fc.weight.zero_()
            model.multitask_temporal_fc.bias.copy_(100.0 * (torch.arange(len(HMDB_CLASSES)) == cls))
        save_checkpoint(out, model, metrics=checkpoint.metrics, train_state=checkpoint.train_state)
        assert train.main(evaluate) == 0
        confusion = np.array(json.loads(capsys.readouterr().out)["confusion"])
        assert confusion[:, cls].sum() == confusion.sum() == report["windows"]

    # A resumed run keeps its datasets; a plain fit is as before, with no second classifier.
    assert train.main(["fit", "--resume", str(out), "--out", str(out), *TINY, *primary]) == 2
    assert "resume it with the same datasets" in capsys.readouterr().err
    plain = read_checkpoint(_fit(tmp_path, capsys, "plain.pt", *primary))
    assert plain.contract.multitask is None and "multitask" not in plain.metrics["recipe"]
    assert not any("multitask" in k for k in plain.state_dict)
    assert set(plain.metrics["history"][0]) == {"stage", "epoch", "spatial_train_acc", "temporal_train_acc"}
    assert train.main(["evaluate", "--model", str(tmp_path / "plain.pt"), "--dataset", "hmdb51", "--root", str(hmdb),
                       "--task", "hmdb51"]) == 2
    assert "has no hmdb51 classifier (its second dataset: none" in capsys.readouterr().err


def test_evaluate_task_scores_windows_of_the_second_dataset():
    torch.manual_seed(0)
    model = TwoStreamNet(with_task(CONTRACT, "hmdb51", ("x", "y"))).eval()
    clips = _clips(("x", "y"), 3, 2)
    report = evaluate_task(model, clips, per_clip=2)
    assert report["windows"] == 6 and sum(map(sum, report["confusion"])) == 6
    with pytest.raises(ContractMismatch, match="not the hmdb51 classifier's"):
        evaluate_task(model, _clips(("a", "b", "c"), 3, 2))


@pytest.mark.parametrize("argv, message", [
    (["fit", "--multitask-dataset", "hmdb51"], "--multitask-dataset and --multitask-root go together"),
    (["fit", "--multitask-root", "{tmp}/hmdb51"], "--multitask-root belongs to the second dataset"),
    (["fit", "--multitask-dataset", "hmdb51", "--multitask-root", "{tmp}/hmdb51"], "give --dataset and --root"),
    (["fit", "--dataset", "ucf101", "--root", "{tmp}/UCF-101", "--multitask-dataset", "ucf101",
      "--multitask-root", "{tmp}/UCF-101"], "is the --dataset itself"),
    (["fit", "--dataset", "ucf101", "--root", "{tmp}/UCF-101", "--multitask-dataset", "hmdb51",
      "--multitask-root", "{tmp}/hmdb51", "--multitask-jpegs", "{tmp}"], "both datasets' flow must come the same way"),
    (["fit", "--dataset", "ucf101", "--root", "{tmp}/UCF-101", "--multitask-dataset", "hmdb51",
      "--multitask-root", "{tmp}/absent"], "hmdb51 folder not found"),
    (["evaluate", "--model", "{tmp}/a.pt", "--dataset", "hmdb51", "--root", "{tmp}/hmdb51", "--task", "hmdb51",
      "--protocol", "frames19"], "--task scores the second classifier over windows"),
])
def test_bad_multitask_arguments_are_one_error_line(tmp_path, capsys, argv, message):
    write_ucf101(tmp_path / "UCF-101", per_class=2)
    write_hmdb51(tmp_path / "hmdb51", per_class=3)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if argv[0] == "fit":
        argv = argv + ["--out", str(tmp_path / "m.pt"), *TINY]
    assert train.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
