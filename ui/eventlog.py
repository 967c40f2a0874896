"""The page's event log: the last gesture events, newest first, as HTML (text escaped)."""

from __future__ import annotations

import html
from typing import Sequence

from twostream.events import Event


def event_log_html(events: Sequence[Event], shown: int = 10) -> str:
    """The newest ``shown`` of ``events`` (oldest first, as Pipeline.events() gives them) as a
    table: label, start and end frame (capture indices: a live source's frame rate varies, so
    no seconds are made up), peak score. An open event's end reads 'now'."""
    def at(frame: int | None) -> str:
        return "now" if frame is None else str(frame)

    rows = [f"<tr data-kind='{e.kind}'><td>{html.escape(e.label)}</td><td>{at(e.start_frame)}</td>"
            f"<td>{at(e.end_frame)}</td><td>{e.peak_score * 100:.0f}%</td></tr>"
            for e in reversed(list(events)[-shown:])]
    body = "".join(rows) or "<tr><td colspan=4>no events yet</td></tr>"
    return ("<div id='event-log'><table style='font-size:13px'>"
            "<tr><th>event</th><th>start frame</th><th>end frame</th><th>peak</th></tr>"
            + body + "</table></div>")
