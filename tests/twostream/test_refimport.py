"""Import of the ResNet-101 two-stream reference's checkpoints (twostream/refimport.py).

The tests write checkpoints in the reference's exact container: torch's legacy (non-zip)
format, pickle protocol 2 with Python 2 byte strings (SHORT_BINSTRING) for every str, a dict
{epoch, state_dict, best_prec1, optimizer} whose state_dict has torchvision's ResNet-101 keys
with conv1_custom and fc_custom; random weights.
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from torchvision import models

import train
from twostream.checkpoint import load_model
from twostream.contract import ModelContract
from twostream.errors import CheckpointError, DataError
from twostream.preprocess import quantise_flow
from twostream.refimport import import_reference, read_class_index, read_reference

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ("ApplyEyeMakeup", "ApplyLipstick", "Archery")


class _Py2Pickler(pickle._Pickler):
    """Python 2's pickle of a str: SHORT_BINSTRING, bytes, not Python 3's BINUNICODE."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, text: str) -> None:
        data = text.encode("latin-1")
        if len(data) >= 256:
            raise ValueError("only short strings in these tests")
        self.write(pickle.SHORT_BINSTRING + struct.pack("<B", len(data)) + data)
        self.memoize(text)

    dispatch[str] = _save_py2_str


class _Py2GpuPickler(_Py2Pickler):
    """... of tensors that were on a GPU: storages of torch.cuda types, at location "cuda:0"."""

    def save_pers(self, pid):  # torch's persistent ids: ("storage", type, key, location, numel)
        if isinstance(pid, tuple) and pid[0] == "storage":
            pid = (pid[0], getattr(torch.cuda, pid[1].__name__), pid[2], "cuda:0", *pid[4:])
        super().save_pers(pid)


def _pickle_module(pickler) -> SimpleNamespace:
    return SimpleNamespace(__name__="py2pickle", Pickler=pickler,
                           dump=lambda obj, file, protocol: pickler(file, protocol).dump(obj))


def reference_net(in_channels: int, seed: int) -> nn.Module:
    """The reference's ResNet-101 (torchvision's, conv1 taking ``in_channels``), random weights,
    random BatchNorm scales and shifts, and BatchNorm statistics measured on random input of
    the kind it takes (as training leaves them): uncalibrated, 33 random blocks wash every input
    out to one output, and the test could not see a channel in the wrong place. Eval mode."""
    torch.manual_seed(seed)
    net = models.resnet101(num_classes=len(CLASSES))
    net.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0.0, 0.1)
            module.momentum = None  # a cumulative average over the calibration batch
    net.fc.weight.data.normal_(0.0, 0.05)
    net.train()
    with torch.no_grad():
        net(torch.rand(4, in_channels, 224, 224) * 4 - 2 if in_channels == 3 else torch.rand(4, in_channels, 224, 224))
    return net.eval()


def reference_state(net: nn.Module, *, batches_tracked: bool = True) -> OrderedDict:
    """The net's state_dict under the reference's names (conv1_custom, fc_custom)."""
    state = OrderedDict()
    for key, value in net.state_dict().items():
        if key.endswith("num_batches_tracked") and not batches_tracked:  # PyTorch 0.3 had none
            continue
        top, _, rest = key.partition(".")
        state[{"conv1": "conv1_custom", "fc": "fc_custom"}.get(top, top) + "." + rest] = value
    return state


def save_reference(path: Path, state: dict, epoch: int = 30, best: float = 82.1, gpu: bool = False) -> Path:
    """model_best.pth.tar as the reference writes it (legacy container, Python 2 strings; with
    ``gpu``, as saved from a model on the GPU, which the reference trains on)."""
    payload = {"epoch": epoch, "state_dict": state, "best_prec1": best,
               "optimizer": {"state": {}, "param_groups": [{"lr": 5e-4, "momentum": 0.9, "params": [1, 2]}]}}
    torch.save(payload, path, pickle_module=_pickle_module(_Py2GpuPickler if gpu else _Py2Pickler), pickle_protocol=2,
               _use_new_zipfile_serialization=False)
    return path


def write_class_index(path: Path, names=CLASSES) -> Path:
    path.write_text("".join(f"{i} {name}\r\n" for i, name in enumerate(names, start=1)))
    return path


def test_the_test_files_are_python2_legacy_pickles(tmp_path):
    """The container the tests build is the legacy one, with Python 2 strings."""
    path = save_reference(tmp_path / "m.pth.tar", OrderedDict(w=torch.zeros(2)))
    data = path.read_bytes()
    assert data[:2] == b"\x80\x02" and not data.startswith(b"PK")
    assert pickle.SHORT_BINSTRING + b"\x0astate_dict" in data and b"X\x0a\x00\x00\x00state_dict" not in data
    gpu = save_reference(tmp_path / "gpu.pth.tar", OrderedDict(w=torch.zeros(2)), gpu=True).read_bytes()
    assert b"ctorch.cuda\nFloatStorage" in gpu and b"cuda:0" in gpu


@pytest.mark.slow
def test_import_gives_the_reference_nets_outputs(tmp_path):
    """Every tensor lands where it belongs: each tower's logits equal the reference net's on the
    input the reference's loaders build (RGB: ImageNet-normalised; flow: field j in channels
    2(j-1), 2(j-1)+1, as q / 256); the file round-trips and the fusion is the logits' mean."""
    spatial_net, motion_net = reference_net(3, seed=1), reference_net(20, seed=2)
    spatial = save_reference(tmp_path / "spatial.pth.tar", reference_state(spatial_net), gpu=True)
    motion = save_reference(tmp_path / "motion.pth.tar", reference_state(motion_net, batches_tracked=False), 12, 79.4)
    model = import_reference(spatial, motion, CLASSES, flow_method="dis-fast", num_segments=2, stride=2)
    contract = model.contract
    assert (contract.backbone, contract.fusion, contract.input_size) == ("resnet101", "late", (224, 224))
    assert (contract.flow_stack_order, contract.flow_scaling, contract.stack_length) == ("oldest-last", "unit", 10)
    assert contract.extra["towers"]["temporal"] == {"file": "motion.pth.tar", "epoch": 12, "best_prec1": 79.4}

    gen = torch.Generator().manual_seed(0)
    rgb = torch.randint(0, 256, (2, 3, 224, 224), generator=gen).float()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    fields = torch.randint(0, 256, (2, 10, 2, 224, 224), generator=gen).float()  # q of 10 fields, oldest first
    reference_flow = torch.zeros(2, 20, 224, 224)
    for j in range(10):  # the reference's motion loader, negative index and all
        reference_flow[:, 2 * (j - 1)] = fields[:, j, 0] / 256
        reference_flow[:, 2 * (j - 1) + 1] = fields[:, j, 1] / 256
    with torch.no_grad():
        want_s, want_t = spatial_net((rgb / 255 - mean) / std), motion_net(reference_flow)
        s, t = model.spatial(rgb), model.temporal(fields.flatten(1, 2))
        got_s, got_t = model.head.tower_logits(s[:, None], t[:, None])
        fused = model.head(s[:, None], t[:, None])
    for want, shuffled in ((want_s, spatial_net((rgb / 255 - mean) / std).flip(0)),
                           (want_t, motion_net(reference_flow[:, torch.randperm(20, generator=gen)]))):
        # The nets tell inputs apart, and the flow net its channels: a wrong order would show.
        assert (want[0] - want[1]).abs().max() > 0.05 * want.abs().max() > 0
        assert (want - shuffled).abs().max() > 0.05 * want.abs().max()
    torch.testing.assert_close(got_s, want_s, rtol=1e-4, atol=1e-4 * want_s.abs().max().item())
    torch.testing.assert_close(got_t, want_t, rtol=1e-4, atol=1e-4 * want_t.abs().max().item())
    torch.testing.assert_close(fused, (got_s + got_t) / 2)

    out = tmp_path / "ucf101.pt"
    assert train.main(["import-resnet101", "--spatial", str(spatial), "--motion", str(motion), "--classes",
                       str(write_class_index(tmp_path / "classInd.txt")), "--out", str(out),
                       "--flow", "dis-fast", "--segments", "2", "--stride", "2"]) == 0
    loaded, checkpoint = load_model(out)
    assert checkpoint.contract == contract and checkpoint.contract.classes == CLASSES
    with torch.no_grad():
        torch.testing.assert_close(loaded.temporal(fields.flatten(1, 2)), t)
    # A contract that differs only in the new fields is another model input: engines refuse it.
    assert ModelContract.from_dict({**contract.to_dict(), "flow_stack_order": "oldest-first"}) != contract

    import cv2

    from twostream.gestures import GestureStream

    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (160, 120))
    for item, _ in zip(GestureStream(3, (160, 120)), range(14)):
        writer.write(item.bgr)
    writer.release()
    done = subprocess.run([sys.executable, "app.py", "--no-ui", "--model", str(out), "--source", str(video),
                           "--backend", "torch", "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    labels = [line for line in done.stdout.splitlines() if '"label"' in line]
    assert labels and all(any(f'"label": "{name}"' in line for name in CLASSES) for line in labels)


def test_class_index_is_read_in_label_order(tmp_path):
    assert read_class_index(write_class_index(tmp_path / "classInd.txt")) == CLASSES
    bad = tmp_path / "bad.txt"
    bad.write_text("1 ApplyEyeMakeup\n3 Archery\n")
    with pytest.raises(DataError, match=r"bad.txt, line 2: class index 3, expected 2"):
        read_class_index(bad)
    bad.write_text("1 ApplyEyeMakeup\nArchery\n")
    with pytest.raises(DataError, match=r"line 2: expected '<index> <class name>', got 'Archery'"):
        read_class_index(bad)


def _cheap_state(in_channels: int) -> OrderedDict:
    """A reference-shaped state_dict without running ResNet-101's init: meta shapes, each tensor
    one zero expanded (stride 0), so the files hold a few bytes per tensor."""
    with torch.device("meta"):
        net = models.resnet101(num_classes=len(CLASSES))
        net.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
    return OrderedDict((k, torch.zeros((), dtype=v.dtype).expand(v.shape)) for k, v in reference_state(net).items())


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("layer3.4.bn2.running_var"), r"1 tensors missing \(first: layer3.4.bn2.running_var\)"),
    (lambda s: s.update({"layer5.0.weight": torch.zeros(1)}), r"unexpected entry 'layer5.0.weight'"),
    (lambda s: s.update({"layer2.0.conv1.weight": torch.zeros(1, 1, 1, 1)}),
     r"1 shape mismatches \(first: layer2.0.conv1.weight: file \(1, 1, 1, 1\)"),
    (lambda s: s.pop("fc_custom.bias"), r"no fc_custom.weight and .bias"),
])
def test_damaged_reference_files_are_named(tmp_path, change, message):
    state = _cheap_state(20)
    change(state)
    path = save_reference(tmp_path / "motion.pth.tar", state)
    with pytest.raises(CheckpointError, match=message) as caught:
        read_reference(path, 20, "motion")
    assert str(path) in str(caught.value)


def test_module_prefix_and_swapped_nets(tmp_path):
    """A DataParallel save ("module.") from the GPU reads on the CPU, so does a bare state_dict;
    the spatial file given as the motion one is named, as is a dict without a state_dict."""
    state = OrderedDict((f"module.{k}", v) for k, v in _cheap_state(3).items())
    path = save_reference(tmp_path / "spatial.pth.tar", state, gpu=True)
    tower = read_reference(path, 3, "spatial")
    assert tower.num_classes == 3 and tower.epoch == 30 and tower.best_prec1 == pytest.approx(82.1)
    with pytest.raises(CheckpointError, match=r"conv1_custom takes 3 input channels, the motion net takes 20: "
                                              r"this is the spatial \(RGB\) net's checkpoint"):
        read_reference(path, 20, "motion")
    bare = tmp_path / "bare.pth"
    torch.save(_cheap_state(20), bare)  # the state_dict alone, as some copies of the weights come
    assert read_reference(bare, 20, "motion").epoch is None
    torch.save({"epoch": 3, "model": _cheap_state(20)}, bare)
    with pytest.raises(CheckpointError, match=r"not a reference checkpoint \(a dict with a 'state_dict'\); "
                                              r"found \['epoch', 'model'\]"):
        read_reference(bare, 20, "motion")


class _Payload:
    """What a malicious checkpoint unpickles to: a shell command run by pickle's REDUCE."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _cli(capsys, argv) -> tuple[int, str]:
    code = train.main(argv)
    return code, capsys.readouterr().err


def test_malicious_pickle_is_refused_with_one_line(tmp_path, capsys):
    marker = tmp_path / "ran"
    evil = tmp_path / "model_best.pth.tar"
    torch.save({"epoch": 1, "state_dict": {"x": _Payload(marker)}}, evil, _use_new_zipfile_serialization=False)
    classes = write_class_index(tmp_path / "classInd.txt")
    code, err = _cli(capsys, ["import-resnet101", "--spatial", str(evil), "--motion", str(evil), "--classes",
                              str(classes), "--out", str(tmp_path / "out.pt")])
    assert code == 2 and not marker.exists() and not (tmp_path / "out.pt").exists()
    assert err.strip().splitlines() == [err.strip()], err
    assert err.startswith(f"error: {evil} is not a readable spatial checkpoint (a pickle; it holds a posix.system")
    assert "refused, as loading it could run code" in err and "weights_only=False" not in err


def test_other_bad_inputs_are_one_line(tmp_path, capsys):
    classes = write_class_index(tmp_path / "classInd.txt")
    text = tmp_path / "notes.pth.tar"
    text.write_text("not a checkpoint\n")
    spatial = save_reference(tmp_path / "s.pth.tar", _cheap_state(3))
    motion = save_reference(tmp_path / "m.pth.tar", _cheap_state(20))
    two = write_class_index(tmp_path / "two.txt", CLASSES[:2])
    cases = [
        ([str(text), str(motion), str(classes)], f"error: {text} is not a PyTorch checkpoint (a text file)"),
        ([str(spatial), str(tmp_path / "none"), str(classes)], f"error: motion checkpoint not found: {tmp_path / 'none'}"),
        ([str(spatial), str(motion), str(two)], f"error: {spatial}: its classifier has 3 classes, the class list has 2"),
        ([str(spatial), str(motion), str(tmp_path / "absent.txt")], "error: cannot read the class list"),
    ]
    for (s, m, c), start in cases:
        code, err = _cli(capsys, ["import-resnet101", "--spatial", s, "--motion", m, "--classes", c,
                                  "--out", str(tmp_path / "out.pt")])
        assert code == 2 and err.startswith(start), err
        assert err.strip().splitlines() == [err.strip()], err
    assert not (tmp_path / "out.pt").exists()


def test_unit_scaling_is_the_flow_jpegs_value():
    """"unit" is q / 256; the reference's JPEG holds round(255 (d + 20) / 40), read as / 255:
    the two agree within a JPEG level over the whole range."""
    d = np.linspace(-19.8, 19.8, 997, dtype=np.float32)
    q = quantise_flow(np.stack([d, d], axis=-1)[:, None], 20.0)[0, :, 0].astype(np.float64)
    jpeg = np.round(255 * (d + 20) / 40) / 255
    assert np.abs(q / 256 - jpeg).max() <= 1.0 / 255
    mean, std = ModelContract(classes=CLASSES, flow_scaling="unit").flow_normalisation()
    assert (mean, std) == (0.0, 256.0)
