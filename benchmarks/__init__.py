"""What ``bench.py`` measures: one file through one pipeline against the naive baseline
(``classic``); many live streams on one shared engine (``streams``), a source faster than the
machine can score and long runs with resident memory sampled (``soak``), on clips held in
memory (``clips``), with the JSON-ready summaries they share (``measure``).

A command-level package: it sits on top of the layers beside the commands (it may import every
package below; no package imports it), and exists only because bench.py would pass the ~400
lines a module may have. Only bench.py imports it; it imports no command (cli.py included).
"""
