"""Inference backends: the model's three parts (spatial tower, temporal tower, fusion head)
behind one small protocol, ``engines.base.Backend``. Open one with ``building.load.open_model``
(``engines.auto`` chooses which)."""
