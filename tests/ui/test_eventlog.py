"""ui.eventlog: the newest events first, at most ``shown``, open ones read 'now', text escaped."""

from __future__ import annotations

from twostream.events import Event
from ui.eventlog import event_log_html


def test_newest_first_limited_and_escaped():
    events = [Event(f"g{i}", 10 * i, 10 * i + 5, 0.9, 10 * i) for i in range(12)]
    events.append(Event("<b>wave</b>", 200, None, 0.875, 201))
    page = event_log_html(events, shown=10)
    assert page.count("<tr data-kind=") == 10
    assert page.index("&lt;b&gt;wave&lt;/b&gt;") < page.index("g11") < page.index("g3")
    assert "g2<" not in page and "<b>wave" not in page
    assert "<td>now</td>" in page and "88%" in page and "data-kind='start'" in page


def test_empty_log():
    assert "no events yet" in event_log_html([])
