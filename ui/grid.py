"""The grid of running streams and a tab's status line, as HTML for the page (text escaped:
stream names, source descriptions and error lines come from the command line, the page's
controls and the network).

Each card: the stream's thumbnail (an ``<img class='thumb' data-token=...>`` that
ui/live_view.js fills, about once a second), its name, its state (connecting, live,
reconnecting, ended, failed) with the last error, and a line of statistics.
"""

from __future__ import annotations

import html
from typing import Sequence

from realtime.streams import StreamState, StreamStatus
from ui.views import StreamView

STATE_COLORS = {StreamState.CONNECTING: "#b26a00", StreamState.LIVE: "#2e7d32",
                StreamState.RECONNECTING: "#e65100", StreamState.ENDED: "#555", StreamState.FAILED: "#c62828"}
CSS = (".stream-grid {display: grid; grid-template-columns: repeat(auto-fill, minmax(230px, 1fr)); gap: 8px}"
       " .stream-card {border: 2px solid #ddd; border-radius: 6px; padding: 4px; font-size: 12px}"
       " .stream-card[data-selected] {border-color: #1f77b4}"
       " .stream-card img.thumb {width: 100%; aspect-ratio: 4 / 3; background: #222; display: block}"
       " .stream-card .badge {color: #fff; border-radius: 3px; padding: 0 4px}"
       " .stream-card .err {color: #c62828}")


def _describe(status: StreamStatus) -> str:
    """'live', 'reconnecting (2 reconnects)', ... for a badge."""
    text = status.state.value
    if status.reconnects:
        text += f" ({status.reconnects} reconnect{'s' if status.reconnects > 1 else ''})"
    return text


def card_html(view: StreamView, selected: bool) -> str:
    status, stats, latest = view.status(), view.stats(), view.stream.latest
    color = STATE_COLORS[status.state]
    error = f"<div class='err'>{html.escape(status.error)}</div>" if status.error else ""
    p50 = stats.stage("total").p50 if stats.predictions else 0.0
    numbers = (f"{stats.input_fps:.1f} fps · {stats.predictions} predictions · {stats.dropped} dropped"
               f" · p50 {p50:.0f} ms")
    label = (f"<b>{html.escape(latest.label)}</b> {latest.score * 100:.0f}%" if latest is not None
             else "no prediction yet")
    return (f"<div class='stream-card' data-stream='{html.escape(view.name, quote=True)}' "
            f"data-state='{status.state.value}'{' data-selected' if selected else ''}>"
            f"<img class='thumb' data-token='{view.token}' alt='{html.escape(view.label, quote=True)}'>"
            f"<div><b>{html.escape(view.label)}</b> <span class='badge' style='background:{color}'>"
            f"{html.escape(_describe(status))}</span></div>"
            f"<div style='color:#555'>{html.escape(view.stream.source.description)}</div>{error}"
            f"<div class='numbers'>{numbers}</div><div class='label'>{label}</div></div>")


def grid_html(views: Sequence[StreamView], watching: str | None) -> str:
    """Every stream a tab may watch, the one it shows large outlined."""
    cards = "".join(card_html(view, view.name == watching) for view in views)
    return f"<div id='stream-grid' class='stream-grid'>{cards or 'no streams'}</div>"


def status_html(view: StreamView | None, note: str | None) -> str:
    """A tab's status line: its ``note`` (a refusal, a closed session) as an error until its
    next start, else the state of the stream it watches. ``data-state`` (the stream's state,
    or 'error') lets a test, or a user's style, read it."""
    if note is not None:
        return (f"<span id='status-line' data-state='error' style='color:#c62828'><b>error:</b> "
                f"{html.escape(note)}</span>")
    if view is None:
        return "<span id='status-line' data-state='none'>no stream</span>"
    status, description = view.status(), view.stream.source.description
    if status.error and description in status.error:  # the error names the source already
        text = f"{_describe(status)}: {view.label}: {status.error}"
    else:
        text = f"{_describe(status)}: {view.label}: {description}" + (f": {status.error}" if status.error else "")
    if status.state is StreamState.ENDED:
        text += f", after {view.stats().predictions} predictions"
    return (f"<span id='status-line' data-state='{status.state.value}' style='color:{STATE_COLORS[status.state]}'>"
            f"{html.escape(text)}</span>")
