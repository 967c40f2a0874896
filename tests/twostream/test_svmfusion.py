"""Late fusion by a linear SVM ("late-svm", twostream/svmfusion.py): the head is a matmul on the
stacked, L2-normalised softmax scores, fitted by LinearSVC on training windows, stored as plain
tensors in the model file, run without scikit-learn."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from twostream.batches import ClipFeatures
from twostream.checkpoint import load_model, save_checkpoint
from twostream.contract import ModelContract
from twostream.errors import DataError
from twostream.model import TwoStreamNet, svm_features
from twostream.svmfusion import fit_svm, install_svm
from twostream.training import Progress, TrainSettings, train_head

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ("a", "b", "c")


def _model(classes=CLASSES) -> TwoStreamNet:
    torch.manual_seed(0)
    contract = ModelContract(classes=classes, fusion="late-svm", input_size=(64, 64), stack_length=3, num_segments=3,
                             stride=2)
    return TwoStreamNet(contract).eval()


def _scores(n: int, k: int, seed: int):
    """Logits where the mean of the towers is mostly wrong and an SVM is right: the spatial
    tower is weakly right, the temporal tower confidently names a permuted class."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(k, size=n)
    eye = np.eye(k)
    spatial = 2.0 * eye[labels] + rng.normal(0, 0.3, (n, k))
    temporal = 8.0 * eye[(labels + 1) % k] + rng.normal(0, 0.3, (n, k))
    return (torch.tensor(spatial, dtype=torch.float32), torch.tensor(temporal, dtype=torch.float32),
            torch.tensor(labels))


def test_features_are_stacked_normalised_softmax_scores():
    s, t = torch.tensor([[1.0, 2.0, 0.0]]), torch.tensor([[0.0, 0.0, 5.0]])
    x = svm_features(s, t)
    assert x.shape == (1, 6)
    torch.testing.assert_close(x[:, :3], torch.softmax(s, 1) / torch.softmax(s, 1).norm())
    torch.testing.assert_close(x[:, 3:], torch.softmax(t, 1) / torch.softmax(t, 1).norm())


@pytest.mark.parametrize("k", [2, 3])
def test_svm_learns_what_averaging_gets_wrong(k):
    spatial, temporal, labels = _scores(400, k, seed=k)
    coef, intercept = fit_svm(spatial, temporal, labels, k)
    assert coef.shape == (k, 2 * k) and intercept.shape == (k,) and coef.dtype == np.float32
    held_s, held_t, held_y = _scores(200, k, seed=10 + k)
    decisions = svm_features(held_s, held_t).numpy() @ coef.T + intercept
    assert (decisions.argmax(1) == held_y.numpy()).mean() > 0.95
    assert ((held_s + held_t).argmax(1) == held_y).float().mean() < 0.6


def test_every_class_needs_windows():
    spatial, temporal, labels = _scores(50, 3, seed=0)
    labels[labels == 2] = 0
    with pytest.raises(DataError, match=r"needs training windows of every class; none of class index\(es\) \[2\]"):
        fit_svm(spatial, temporal, labels, 3)


def test_head_uses_the_stored_svm_and_runs_without_sklearn(tmp_path):
    """The head's output is the SVM's decision values; the weights survive the model file as
    plain tensors; loading and running it never imports scikit-learn."""
    model = _model()
    gen = torch.Generator().manual_seed(3)
    coef, intercept = torch.randn(3, 6, generator=gen), torch.randn(3, generator=gen)
    install_svm(model, coef.numpy(), intercept.numpy())
    s, t = torch.randn(2, 3, model.feature_channels, 4, 4), torch.randn(2, 3, model.feature_channels, 4, 4)
    with torch.no_grad():
        spatial, temporal = model.head.tower_logits(s, t)
        torch.testing.assert_close(model.head(s, t), svm_features(spatial, temporal) @ coef.T + intercept)
    path = tmp_path / "svm.pt"
    save_checkpoint(path, model)
    script = ("import sys; sys.modules['sklearn'] = None\n"  # any import of sklearn now fails
              "import torch\nfrom twostream.checkpoint import load_model\n"
              f"model, _ = load_model({str(path)!r})\n"
              "print(model.head.svm_coef.sum().item(), model.head.svm_intercept.sum().item())\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    got = [float(v) for v in done.stdout.split()]
    assert got == pytest.approx([coef.sum().item(), intercept.sum().item()], rel=1e-5)
    loaded, checkpoint = load_model(path)
    assert checkpoint.contract.fusion == "late-svm"
    assert set(checkpoint.state_dict) >= {"head.svm_coef", "head.svm_intercept"}


def test_install_refuses_another_fusion():
    model = TwoStreamNet(ModelContract(classes=CLASSES, fusion="late", input_size=(64, 64), stack_length=3))
    with pytest.raises(ValueError, match="fusion is 'late', not 'late-svm'"):
        install_svm(model, np.zeros((3, 6), np.float32), np.zeros(3, np.float32))


def test_train_head_fits_the_svm_on_training_windows():
    """train.py fit's head stage: for late-svm, the SVM on the training clips' windows."""
    model = _model()
    rng = torch.Generator().manual_seed(5)
    channels = model.feature_channels
    feats = []
    for clip in range(12):
        label = clip % 3
        base = torch.zeros(channels)
        base[label * 8:(label + 1) * 8] = 3.0  # each class lights its own channels
        spatial = base.view(1, channels, 1, 1) + 0.3 * torch.randn(16, channels, 4, 4, generator=rng)
        temporal = 0.3 * torch.randn(16, channels, 4, 4, generator=rng)
        feats.append(ClipFeatures(spatial, temporal, label))
    with torch.no_grad():  # per-frame classifiers that read those channels
        model.head.spatial_fc.weight.zero_()
        for label in range(3):
            model.head.spatial_fc.weight[label, label * 8:(label + 1) * 8] = 1.0
    before = model.head.svm_coef.clone()
    seen = []
    train_head(model, feats, TrainSettings(), Progress("head"), lambda progress, figures: seen.append(figures))
    assert len(seen) == 1 and seen[0]["svm_windows"] == 12 * 8 and seen[0]["svm_train_acc"] > 0.9
    assert not torch.equal(model.head.svm_coef, before)


@pytest.mark.slow
def test_fit_late_svm_then_run_it_live(tmp_path, capsys):
    """train.py fit --fusion late-svm fits the SVM on the head's (training) clips and stores it;
    app.py runs the model file live, its head the SVM."""
    import train

    out = tmp_path / "svm.pt"
    tiny = ["--input-size", "48", "--stack-length", "2", "--segments", "2", "--stride", "2", "--frames", "12",
            "--batch", "8", "--samples-per-clip", "2", "--per-clip", "2", "--workers", "1", "--no-real",
            "--clips-per-class", "1", "--head-clips-per-class", "2", "--val-clips-per-class", "1",
            "--tower-epochs", "1", "--head-epochs", "1"]
    assert train.main(["fit", "--out", str(out), "--fusion", "late-svm", *tiny]) == 0
    capsys.readouterr()
    model, checkpoint = load_model(out)
    assert checkpoint.contract.fusion == "late-svm"
    initial = 0.5 * torch.cat([torch.eye(10)] * 2, dim=1)
    assert not torch.allclose(checkpoint.state_dict["head.svm_coef"], initial)
    done = subprocess.run([sys.executable, "app.py", "--no-ui", "--model", str(out), "--source", "demo",
                           "--max-frames", "24", "--backend", "torch", "--quiet"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert any('"label"' in line for line in done.stdout.splitlines()), done.stdout[-2000:]
