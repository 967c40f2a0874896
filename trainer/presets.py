"""train.py presets, and ``fit --preset NAME``: a published system's options as fit's defaults
(twostream/presets.py), so every flag given on the command line still wins."""

from __future__ import annotations

import argparse

from twostream.presets import presets_report, presets_table, preset_named


def list_presets(args) -> dict:
    """Every preset, its options, test protocol and published accuracy (a table with --table)."""
    return {**presets_report(), "table": presets_table()}


def with_preset(parser: argparse.ArgumentParser, fit: argparse.ArgumentParser, args: argparse.Namespace,
                argv: list[str]) -> argparse.Namespace:
    """``args`` parsed again with the preset ``args.preset`` names as ``fit``'s defaults; ``args``
    itself when no preset is named."""
    if getattr(args, "preset", None) is None:
        return args
    fit.set_defaults(**preset_named(args.preset).options.defaults())
    return parser.parse_args(argv)
