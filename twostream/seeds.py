"""Named seeds of the generated data, in one place, so no split ever renders another's clip.

Generated clips are seeded per (split seed, class, clip) (twostream.data.clip_seed), so two
splits share a clip only if they share a seed. Training takes ``--seed`` (default TRAIN) and
derives its other splits from it by the offsets below.
"""

TRAIN = 0  # the towers' training clips (train.py fit --seed)
HEAD_OFFSET = 500  # the fusion head's clips: seed + 500, never seen by the towers
HELD_OUT_OFFSET = 1000  # held-out evaluation clips: seed + 1000
MINING_OFFSET = 100_000  # hard-example mining's pool: seed + 100000 + chunk, far from every named seed
HELD_OUT = TRAIN + HELD_OUT_OFFSET  # parity windows and train.py evaluate's default
DEMO_CALIBRATION = 2000  # the demo stream int8 calibration reads
VALIDATION = 3000  # windows that choose which parts stay int8 (never the held-out ones)
DEMO_STREAM = 0  # app.py --source demo
HELD_OUT_STREAMS = 4000  # the field test's gesture streams (train.py field-test); tuning uses VALIDATION on
SELECTION_STREAMS = 3500  # streams that choose between training recipes (e.g. flow compensation)
BENCH_CLIP = 0  # bench.py --seed: the gesture stream its clip is cut from
RANDOM_WEIGHTS = 0  # bench.py's stand-in model (torch.manual_seed) when models/demo.pt is absent
