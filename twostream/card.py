"""A model card, rendered from what the checkpoint itself records (so the card cannot drift
from the file): classes, contract, data recipe, command, held-out accuracy, size, FLOPs."""

from __future__ import annotations

from pathlib import Path

from twostream.contract import BIDIRECTIONAL_CHANNEL_ORDER
from twostream.preprocess import WindowPlan
from twostream.checkpoint import Checkpoint


_CONV_FUSION = (" at the last conv layer, then 3D conv 3x3x3 + 3D max pooling over T; final score = mean of fused "
                "and temporal predictions")
_FUSION_WORDS = {
    "late": ": each tower's per-frame classifier averaged over T; final score = mean of the two towers' logits",
    "late-svm": ": each tower's per-frame classifier averaged over T; final score = a linear SVM on the two "
                "towers' stacked, L2-normalised softmax scores (its weights in the model file)",
    "late-concat": ": each tower's per-frame classifier averaged over T; final score = a linear layer on the two "
                   "towers' concatenated logits (2K -> K), learnt on windows of cached tower features",
}

def _lineage_lines(recipe: dict) -> list[str]:
    """One line per model the weights were fine-tuned from, newest first (each fine-tune's
    recipe holds the one before it), so the card names every command that made them."""
    lines = []
    while "initialised_from" in recipe:
        recipe = recipe["initialised_from"]
        lines.append(f"- initialised from `{recipe.get('file')}`, itself trained by `{recipe.get('command')}` "
                     f"on {recipe.get('data')}")
    return lines


def _real_lines(real) -> list[str]:
    """The real footage of the recipe: which files trained, which were held out (by file)."""
    if real is None:
        return []
    if isinstance(real, str):
        return [f"- real footage: {real}"]
    return [f"- real footage as `{real.get('label')}` ({real.get('folder')}), split by file: "
            f"{real.get('clips_per_file')} augmented clips per training file per stage "
            f"({real.get('clips_per_stage')} in all), {real.get('backdrop_fraction')} of generated clips over "
            f"real moving backgrounds; {real.get('augmentation')}",
            f"  - training files: {', '.join(real.get('train_files', [])) or 'none'}",
            f"  - validation files (never trained on): {', '.join(real.get('val_files', [])) or 'none'}",
            *([f"  - not in the split table, split by name hash: {', '.join(real['unlisted_split_by_name_hash'])}"]
              if real.get("unlisted_split_by_name_hash") else []),
            *([f"  - training-only files from other folders (`--extra-real`): {', '.join(real['extra_train_files'])}"]
              if real.get("extra_train_files") else [])]


def _mining_lines(mining) -> list[str]:
    """Hard-example mining (train.py fit --mine-pool), when the run mined."""
    if not mining:
        return []
    return [f"- hard-example mining: {mining.get('pool_clips')} fresh generated clips (seeds {mining.get('seeds')}) "
            f"scored by the model fine-tuned from; the {mining.get('keep_per_class')} with the highest loss in each "
            f"class ({mining.get('kept_clips')} clips) added to the towers' training clips; mean loss per class, "
            f"pool {mining.get('pool_loss_per_class')}, kept {mining.get('kept_loss_per_class')}"]


def _event_lines(policy, tuning) -> list[str]:
    """The event policy the file carries, and how it was chosen."""
    lines = [f"- policy: a window votes for its top class at probability >= {policy.threshold:g} "
             f"(`{policy.background}` never votes); an event starts on {policy.k} votes of the last "
             f"{policy.n} windows, ends after {policy.end_after} windows without one, and the same class "
             f"cannot restart for {policy.cooldown} windows"
             + (f"; an event still voted for after {policy.max_length} windows ends there and is reported "
                f"again, as a repetition" if policy.max_length is not None else "")]
    if not tuning:
        return lines + ["- not tuned: the defaults of twostream.events.EventPolicy"]
    chosen = tuning.get("validation", {})
    return lines + [f"- tuned by `train.py tune-events` on {tuning.get('data')} (validation seeds, never "
                    f"the held-out ones): event precision {chosen.get('precision')}, recall "
                    f"{chosen.get('recall')} there ({tuning.get('grid')} policies tried)"]


def _field_lines(field) -> list[str]:
    """The field test (train.py field-test --record): held-out streams and real clips."""
    if not field:
        return ["Not measured (`python train.py field-test --model FILE --record`)."]
    streams, real = field.get("streams", {}), field.get("real_clips", {})
    lines = [f"Data: {field.get('data')}.", "",
             "| backgrounds | gesture segments right | false alarms in quiet stretches | event precision | "
             "event recall |", "|---|---|---|---|---|"]
    for kind in ("moving", "still"):
        r = streams.get(kind, {})
        lines.append(f"| {kind} real | {r.get('segment_accuracy')} ({r.get('segments_right')}/"
                     f"{r.get('gesture_segments')}) | {r.get('false_alarm_rate')} ({r.get('quiet_alarms')}/"
                     f"{r.get('quiet_windows')} windows) | {r.get('event_precision')} | {r.get('event_recall')} |")
    by_stream = [f"{kind}: " + ", ".join(f"{seed} {c.get('quiet_alarms')}/{c.get('quiet_windows')}"
                                         for seed, c in streams[kind]["per_stream"].items())
                 for kind in ("moving", "still") if "per_stream" in streams.get(kind, {})]
    if by_stream:
        lines += ["", "Quiet windows naming a gesture, by stream (seed alarms/windows): " + "; ".join(by_stream) + "."]
    lines += ["", f"Validation real files alone (nobody gestures): {real.get('alarm_windows')} of "
              f"{real.get('windows')} windows name a gesture with score >= 0.5 (rate "
              f"{real.get('false_alarm_rate')}); {real.get('events')} events "
              f"({real.get('events_per_minute')} per minute).", "",
              "| file | windows | windows naming a gesture | events |", "|---|---|---|---|"]
    for name, r in real.get("per_file", {}).items():
        labels = ", ".join(f"{label} x{count}" for label, count in r.get("event_labels", []))
        lines.append(f"| {name} | {r.get('windows')} | {r.get('alarm_windows')} | {r.get('events')}"
                     f"{f' ({labels})' if labels else ''} |")
    return lines


def render_card(path: Path, checkpoint: Checkpoint) -> str:
    c = checkpoint.contract
    m = checkpoint.metrics
    held = m.get("held_out", {})
    flops = m.get("flops", {})
    recipe = m.get("recipe", {})
    size_mb = path.stat().st_size / 1e6
    lines = [
        f"# Model card: {path.name}",
        "",
        "A fused two-stream network (Feichtenhofer, Pinz, Zisserman, CVPR 2016) trained by this",
        "repository's own code on procedurally generated gesture clips (twostream/gestures.py).",
        "",
        "## Classes",
        "",
        ", ".join(f"`{name}`" for name in c.classes),
        "",
        "## Contract (what the runtime must feed it)",
        "",
        (f"- backbone `{c.backbone}` for both towers" if c.temporal_trunk == c.backbone else
         f"- backbone `{c.backbone}` for the spatial tower, `{c.temporal_trunk}` for the temporal tower")
        + f", fusion `{c.fusion}`" + _FUSION_WORDS.get(c.fusion, _CONV_FUSION),
        f"- input {c.input_size[0]}x{c.input_size[1]} (whole frame resized, no crop), {c.channel_order.upper()} 0..255, "
        f"mean {list(c.rgb_mean)}, std {list(c.rgb_std)} (applied inside the network)",
        (f"- flow `{c.flow_method}` at {c.input_size[0]}x{c.input_size[1]} on grey frames, camera-motion "
         if c.flow_frame_size is None else
         f"- flow `{c.flow_method}` on grey frames of {c.flow_frame_size[0]}x{c.flow_frame_size[1]}, each field "
         f"resized to {c.input_size[0]}x{c.input_size[1]} with its values kept (px of those frames), camera-motion ")
        + f"compensation `{c.flow_compensation}`, clipped to "
        f"±{c.flow_bound:g} px, {c.flow_quantisation}",
        *([f"- trained on pre-extracted `{c.flow_source.method}` flow JPEGs (±{c.flow_source.bound:g} px, "
           f"{c.flow_source.quantisation}), read back to px, resized with the frames and quantised as above; "
           f"live it needs `{c.flow_method}` flow"] if c.flow_source else []),
        f"- L = {c.stack_length} fields per stack ({c.flow_channels} channels: "
        f"{c.flow_channel_order if c.flow_direction == 'forward' else BIDIRECTIONAL_CHANNEL_ORDER}), "
        f"T = {c.num_segments} sampled frames, stride τ = {c.stride} frames at {c.train_fps:g} fps "
        f"(a window spans {WindowPlan.of(c).span} frames)",
        f"- the temporal network takes the fields `{c.flow_stack_order}`, scaled `{c.flow_scaling}` "
        "(twostream/contract.py: FLOW_STACK_ORDERS, FLOW_SCALINGS)",
        "",
        "## Training data and command",
        "",
        f"- data: {recipe.get('data', 'not recorded')}",
        *_real_lines(recipe.get("real")),
        *([f"- multi-task: the temporal tower also learnt {recipe['multitask'].get('data')} through its own "
           f"classifier `multitask_temporal_fc` ({len(c.multitask.classes) if c.multitask else '?'} classes); "
           f"{recipe['multitask'].get('batch')}"] if "multitask" in recipe else []),
        *_mining_lines(recipe.get("mining")),
        f"- command: `{recipe.get('command', 'not recorded')}`",
        # Files from before the device was recorded were all trained on the 2-core machines.
        f"- training time: {m.get('train_minutes', '?')} min on {m.get('trained_on', '2 CPU cores')}",
        *_lineage_lines(recipe),
        "",
        "## Held-out accuracy",
        "",
        f"Held-out set: {held.get('held_out', 'not recorded')}; {held.get('windows', '?')} windows "
        f"at the run-time stride, {held.get('clips', '?')} clips.",
        "",
        "| model | top-1 |",
        "|---|---|",
        f"| spatial tower alone | {held.get('top1_spatial', float('nan')):.4f} |",
        f"| temporal tower alone | {held.get('top1_temporal', float('nan')):.4f} |",
        f"| fused ({c.fusion}) | {held.get('top1_fused', float('nan')):.4f} |",
        "",
        "Confusion matrix (rows: true class, columns: predicted), in class order above:",
        "",
        "```",
        *(" ".join(f"{v:4d}" for v in row) for row in held.get("confusion", [])),
        "```",
        "",
        "## In the field: held-out streams and real footage",
        "",
        *_field_lines(m.get("field")),
        "",
        "## Gesture events",
        "",
        *_event_lines(c.events, m.get("events")),
        "",
        "## Size and cost",
        "",
        f"- file size: {size_mb:.2f} MB",
        f"- spatial tower: {flops.get('spatial_gflops', '?')} GFLOPs per frame",
        f"- temporal tower: {flops.get('temporal_gflops', '?')} GFLOPs per frame",
        f"- fusion head: {flops.get('head_gflops_per_window', '?')} GFLOPs per window",
        f"- per frame at hop 1 (both towers once, features cached, plus one head): "
        f"{flops.get('per_frame_gflops_hop1', '?')} GFLOPs",
        f"- per window scored from scratch (naive: T frames through both towers + head): "
        f"{flops.get('naive_gflops_per_window', '?')} GFLOPs",
        "",
        "FLOPs = 2 x multiply-adds of convolutions and matrix products, counted with",
        "torch.utils.flop_counter (twostream/flops.py), not estimated.",
        "",
        "## Limits",
        "",
        *(["Trained on generated gestures (a drawn hand with forearm, over generated scenes and",
           "real footage, among moving distractors) and on real footage in which nobody gestures. No",
           "real hand performing the gestures was ever seen: the figures above measure false alarms on",
           "real scenes and recognition of generated gestures over them, not recognition of real hands."]
          if isinstance(recipe.get("real"), dict) else
          ["Trained only on synthetic clips: a textured hand-like object over synthetic scenes. It is",
           "a working demo and a template for your own data (`python train.py fit --data DIR`), not a",
           "validated recogniser of real hands."]),
        "",
    ]
    return "\n".join(lines)
