"""The SVG plots: class names (they come from a model file) are escaped, never markup."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np

from realtime.messages import Prediction, StageTimes
from ui.plots import latency_histogram_svg, probability_svg

HOSTILE = '<script>&"x"'
CLASSES = ("wave", HOSTILE)


def _prediction(t_scored: float) -> Prediction:
    probs = np.array([0.25, 0.75], np.float32)
    return Prediction(index=40, seq=40, window_start=10, t_capture=t_scored - 0.05, t_scored=t_scored,
                      classes=CLASSES, logits=np.log(probs), probs=probs,
                      topk=((HOSTILE, 0.75), ("wave", 0.25)), times=StageTimes(1.0, 2.0, 3.0, 4.0, 5.0, 50.0, 0.5),
                      dropped=0)


def test_class_names_are_escaped_in_the_probability_plot():
    svg = probability_svg([_prediction(1.0), _prediction(1.5)], now=2.0)
    assert "<script>" not in svg and HOSTILE not in svg
    assert "&lt;script&gt;&amp;&quot;x&quot;" in svg
    legend = [t.text for t in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}text")]
    assert f"{HOSTILE} 0.75" in legend  # well-formed XML that reads back as the name itself


def test_both_plots_are_well_formed_xml():
    ET.fromstring(latency_histogram_svg([10.0, 20.0, 30.0]))
    ET.fromstring(probability_svg((), now=0.0))
