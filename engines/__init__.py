"""Inference backends: the model's three parts (spatial tower, temporal tower, fusion head)
behind one small protocol, ``engines.base.Backend``. Pick one with ``engines.select``."""
