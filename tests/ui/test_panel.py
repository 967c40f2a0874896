"""The stats panel shows the capture lag beside the glass-to-label latency."""

from __future__ import annotations

import numpy as np

from realtime.messages import Prediction, StageTimes
from realtime.stats import PipelineStats
from ui.panel import stats_html


def test_the_panel_has_a_row_for_each_figure_and_the_capture_lag():
    stats = PipelineStats(window=8)
    stats.on_capture(1.0)
    stats.on_prediction(Prediction(index=40, seq=40, window_start=10, t_capture=1.0, t_scored=1.05,
                                   classes=("a", "b"), logits=np.zeros(2, np.float32),
                                   probs=np.full(2, 0.5, np.float32), topk=(("a", 0.5),),
                                   times=StageTimes(1.0, 2.0, 3.0, 4.0, 5.0, 80.0, 30.0), dropped=7))
    snapshot = stats.snapshot(dropped=7)
    assert snapshot.stage("lag").p50 == 30.0 and snapshot.stage("total").p50 == 80.0
    page = stats_html(snapshot, "torch fp32", "a model")
    assert "capture lag" in page and "<td>30.0</td>" in page and "<td>80.0</td>" in page
