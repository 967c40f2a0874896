"""The published systems as presets (train.py fit --preset NAME, twostream/presets.py): each
preset's values are what it says, flags given still win, and each one trains a step and is
evaluated with its own protocol on a tiny UCF101 written by the test (with a tiny backbone and
small input: the presets' own VGG-16 / ResNet at 224 px are far too slow for a 2-core CPU)."""

import json

import numpy as np
import pytest
import torch

import train
from tests.twostream.dataset_layouts import write_hmdb51, write_ucf101
from trainer.args import parse_args
from twostream.checkpoint import read_checkpoint
from twostream.presets import PRESETS, PresetOptions, preset_named

# Speed only: a tiny backbone at 32 px, 2-field stacks, windows of 2 frames at stride 2 (the
# written clips have 14 frames), one step of each stage, DIS flow (TV-L1 in torch is the preset's).
FAST = ["--backbone", "tiny", "--no-pretrained", "--input-size", "32", "--stack-length", "2", "--segments", "2",
        "--stride", "2", "--batch", "4", "--samples-per-clip", "1", "--per-clip", "1", "--workers", "1", "--no-real",
        "--tower-epochs", "1", "--head-epochs", "1", "--flow", "dis-ultrafast"]


def _fit_args(name: str, *extra: str):
    return parse_args(["fit", "--out", "m.pt", "--preset", name, *extra])


def test_each_preset_sets_the_published_values():
    simonyan = _fit_args("simonyan2014")
    assert (simonyan.stack_length, simonyan.flow_compensation, simonyan.fusion) == (10, "mean", "late")
    reference = _fit_args("resnet101-twostream")
    assert (reference.backbone, reference.fusion, reference.pretrained, reference.spatial_segments,
            reference.input_size, reference.stack_length) == ("resnet101", "late", True, 3, 224, 10)
    fusion = _fit_args("feichtenhofer2016")
    assert (fusion.backbone, fusion.fusion, fusion.segments, tuple(fusion.train_strides), fusion.input_size) == \
        ("vgg16", "conv", 5, (5, 15), 224)
    baseline = _fit_args("concat-baseline")
    assert (baseline.backbone, baseline.temporal_backbone, baseline.fusion) == ("resnet50", "tiny", "late-concat")
    assert [preset_named(n).protocol for n in ("simonyan2014", "resnet101-twostream", "feichtenhofer2016")] == \
        ["frames25", "frames19", "clips20-flip"]
    # The features other helpers build are named, not set.
    assert "--flow-direction bidirectional" in preset_named("simonyan2014").notes
    assert "--multitask-dataset hmdb51 --multitask-root DIR" in preset_named("simonyan2014").notes
    # Every option a preset sets reaches the parsed arguments; nothing else moves.
    plain = parse_args(["fit", "--out", "m.pt"])
    for preset in PRESETS:
        args = _fit_args(preset.name)
        for name, value in preset.options.defaults().items():
            got = getattr(args, name)
            assert (tuple(got) if isinstance(value, tuple) else got) == value, (preset.name, name)
        untouched = set(vars(plain)) - set(preset.options.defaults()) - {"preset", "argv"}
        assert all(getattr(args, n) == getattr(plain, n) for n in untouched), preset.name


def test_flags_given_win_over_the_preset():
    args = _fit_args("feichtenhofer2016", "--backbone", "tiny", "--train-strides", "2", "3", "--no-pretrained")
    assert (args.backbone, tuple(args.train_strides), args.pretrained, args.fusion) == ("tiny", (2, 3), False, "conv")
    args = parse_args(["fit", "--fusion", "late-svm", "--out", "m.pt", "--preset", "simonyan2014"])  # either order
    assert (args.fusion, args.flow_compensation) == ("late-svm", "mean")


def test_flags_render_every_value():
    assert PresetOptions(backbone="vgg16", pretrained=False, train_strides=(5, 15)).flags() == \
        "--backbone vgg16 --no-pretrained --train-strides 5 15"


def test_presets_command_lists_each_with_its_published_accuracy(capsys):
    assert train.main(["presets"]) == 0
    text = capsys.readouterr().out
    for preset in PRESETS:
        assert f"| {preset.name} | `{preset.options.flags()}` | {preset.protocol} |" in text
        assert f"- {preset.name} ({preset.system}): {preset.notes}" in text
    for figure in ("73.0 / 40.5", "83.7 / 54.6", "86.9 / 58.0", "88.0 / 59.4", "82.1", "79.4", "88.5", "92.5 / 65.4"):
        assert figure in text
    assert train.main(["presets", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [p["name"] for p in data["presets"]] == [p.name for p in PRESETS]


def test_an_unknown_preset_or_backwards_strides_are_one_error_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_args(["fit", "--out", "m.pt", "--preset", "nope"])
    assert exit_.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err
    assert train.main(["fit", "--out", str(tmp_path / "m.pt"), *FAST, "--train-strides", "5", "2"]) == 2
    assert capsys.readouterr().err.strip() == "error: --train-strides 5 2: LO is above HI"


@pytest.fixture(scope="module")
def ucf101(tmp_path_factory):
    return write_ucf101(tmp_path_factory.mktemp("presets") / "UCF-101")


# What each preset must leave in the model file through the speed overrides above.
EXPECTED = {
    "simonyan2014": {"fusion": "late", "flow_compensation": "mean"},
    "resnet101-twostream": {"fusion": "late"},
    "feichtenhofer2016": {"fusion": "conv"},
    "concat-baseline": {"fusion": "late-concat", "temporal_backbone": "tiny"},
}


@pytest.mark.parametrize("name", [p.name for p in PRESETS])
def test_each_preset_trains_a_step_and_evaluates_with_its_protocol(name, ucf101, tmp_path, capsys):
    out = tmp_path / f"{name}.pt"
    # The concat baseline keeps its own temporal backbone: a small ResNet-18 spatial tower beside it.
    speed = FAST + (["--backbone", "resnet18"] if name == "concat-baseline" else [])
    data = ["--dataset", "ucf101", "--root", str(ucf101), "--split", "1"]
    assert train.main(["fit", "--preset", name, "--out", str(out), *data, *speed]) == 0
    held_out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert held_out["clips"] == 2
    checkpoint = read_checkpoint(out)
    for field, value in EXPECTED[name].items():
        assert getattr(checkpoint.contract, field) == value, field
    assert checkpoint.metrics["recipe"]["preset"] == name
    protocol = preset_named(name).protocol
    assert train.main(["evaluate", "--model", str(out), *data, "--protocol", protocol]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["protocol"] == protocol and report["splits"][0]["videos"] == 2
    if name == "concat-baseline":  # its Linear(2K, K) learnt in the head stage, away from its init
        init = 0.5 * torch.cat([torch.eye(2)] * 2, dim=1)
        assert not torch.equal(checkpoint.state_dict["head.concat_fc.weight"], init)


def test_simonyan2014_whole_bidirectional_multi_task_and_svm_fused(ucf101, tmp_path, capsys):
    """The flags its notes name, on top of the preset: bi-directional stacks, multi-task training
    on HMDB51 beside UCF101, and SVM fusion scored through the head (clips20-flip)."""
    hmdb = write_hmdb51(tmp_path / "hmdb51")
    out = tmp_path / "simonyan.pt"
    data = ["--dataset", "ucf101", "--root", str(ucf101), "--split", "1"]
    assert train.main(["fit", "--preset", "simonyan2014", "--out", str(out), *data, *FAST, "--fusion", "late-svm",
                       "--flow-direction", "bidirectional", "--multitask-dataset", "hmdb51",
                       "--multitask-root", str(hmdb)]) == 0
    capsys.readouterr()
    contract = read_checkpoint(out).contract
    assert (contract.fusion, contract.flow_direction, contract.flow_compensation) == ("late-svm", "bidirectional",
                                                                                      "mean")
    assert contract.multitask is not None
    assert train.main(["evaluate", "--model", str(out), *data, "--protocol", "clips20-flip"]) == 0
    assert json.loads(capsys.readouterr().out)["splits"][0]["videos"] == 2


def test_the_readme_table_shows_each_preset_as_the_code_sets_it():
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for preset in PRESETS:
        assert f"| `{preset.name}` | `{preset.options.flags()}` | {preset.published} | `{preset.protocol}` |" in readme
