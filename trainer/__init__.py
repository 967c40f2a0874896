"""What ``train.py`` runs, one module per subcommand: ``fit``, ``evaluate``, ``streams``
(tune-events, field-test), ``files`` (import-resnet101, card), ``presets`` (presets, fit --preset),
with the clips and devices they share in ``common`` and the command line in ``args``.

A command-level package, like building/ and benchmarks/: it may import every package below it
and none imports it; it exists because train.py would pass the ~400 lines a module may have.
"""
