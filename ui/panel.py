"""The stats panel (per-stage latency and capture lag percentiles, rates, drops, backend) and
the model card's summary, as HTML for the page."""

from __future__ import annotations

import html
from pathlib import Path

from realtime.messages import StageTimes
from realtime.stats import StatsSnapshot

STAGE_LABELS = {"decode": "decode", "flow": "flow", "spatial": "spatial tower", "temporal": "temporal tower",
                "head": "fusion head", "total": "end to end (glass to label)",
                "lag": "capture lag (behind the source's clock)"}
CARD_KEYS = ("# Model card", "- backbone", "- flow", "Held-out set", "| fused", "- file size")


def _shorten(line: str, limit: int = 100) -> str:
    return line if len(line) <= limit else line[: limit - 1] + "…"


def model_summary(model_path: Path) -> str:
    """A few lines of the model card beside the model (models/demo.pt -> models/demo.md): its
    title, backbone, flow, held-out set and fused accuracy, size. Plain text."""
    card = Path(model_path).with_suffix(".md")
    if not card.is_file():
        return f"model {Path(model_path).name}: no model card ({card.name} not found)"
    picked = []
    for line in card.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line.startswith(CARD_KEYS):
            continue
        if line.startswith("|"):  # the accuracy table's row: | fused (conv) | 0.9325 |
            name, value = (cell.strip() for cell in line.strip("|").split("|")[:2])
            line = f"held-out top-1, {name}: {value}"
        picked.append(_shorten(line.lstrip("#- ").replace("`", "")))
    return "\n".join(picked) if picked else card.read_text(encoding="utf-8").splitlines()[0]


def stats_html(snapshot: StatsSnapshot | None, engine: str, summary: str) -> str:
    """The stats panel of one stream. ``snapshot`` None: no stream; ``engine`` says what
    scores it (one line)."""
    rows = []
    if snapshot is not None:
        for name in StageTimes.NAMES:
            s = snapshot.stage(name)
            rows.append(f"<tr><td>{STAGE_LABELS[name]}</td><td>{s.p50:.1f}</td><td>{s.p95:.1f}</td></tr>")
        acc = ("n/a" if snapshot.accuracy is None
               else f"{snapshot.accuracy * 100:.1f}% over {snapshot.accuracy_windows} pure windows")
        rates = (f"<tr><td>input fps</td><td colspan=2 class='v' id='input-fps'>{snapshot.input_fps:.1f}</td></tr>"
                 f"<tr><td>scored fps</td><td colspan=2 id='scored-fps'>{snapshot.scored_fps:.1f}</td></tr>"
                 f"<tr><td>frames / predictions</td><td colspan=2 id='counts'>"
                 f"{snapshot.frames} / {snapshot.predictions}</td></tr>"
                 f"<tr><td>dropped frames</td><td colspan=2>{snapshot.dropped}</td></tr>"
                 f"<tr><td>live accuracy</td><td colspan=2>{acc}</td></tr>")
    else:
        rates = "<tr><td colspan=3>no stream</td></tr>"
    card = html.escape(summary).replace("\n", "<br>")
    return ("<div id='stats-panel'><table style='font-size:13px'>"
            "<tr><th>stage</th><th>p50 ms</th><th>p95 ms</th></tr>"
            + "".join(rows) + rates
            + f"<tr><td>engine</td><td colspan=2 id='engine'>{html.escape(engine)}</td></tr>"
            "</table>"
            f"<p style='font-size:12px;color:#555'>{card}</p></div>")
