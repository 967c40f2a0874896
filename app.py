#!/usr/bin/env python
"""Real-time two-stream action recognizer.

Without --no-ui it serves a live page (Gradio) on http://127.0.0.1:7860, each browser tab
scoring its own pipeline (default source: the demo stream):

    python app.py                                        # the page, on the demo stream
    python app.py --source 0 --port 8000 --auth me:secret --allow-dir ~/videos

Headless, it prints one JSON line per prediction on stdout and a summary of the stats on
stderr at the end:

    python app.py --source demo --no-ui                  # endless synthetic gestures, live accuracy
    python app.py --source clip.mp4 --no-ui --hop 3      # a file, scored every 3rd frame
    python app.py --source rtsp://127.0.0.1:8554/cam --no-ui --max-frames 500
    python app.py --source 0 --no-ui                     # camera 0

Each line has: frame (capture index of the window's newest frame), window_start (its oldest
frame), t_capture and t_scored (time.monotonic() seconds), label, score, topk ([label, p] best
first), latency_ms (per-stage ms of the newest frame, and total = capture to scored), dropped
(frames dropped so far) and active (the label of the gesture event going on after this
window, null: no gesture). The window where an event starts or ends also has event: {type:
"start" | "end", label, start_frame, end_frame (null on a start), peak_score}; the model file's
event policy (train.py tune-events) says when windows become events. A source that knows the
truth (demo) adds true_label, window_pure (all frames of the window in one gesture) and the
running accuracy over such windows.

End of file, --max-frames, Ctrl-C and SIGTERM stop it cleanly (exit 0). Any error is one line
on stderr, 'error: ...', and exit status 2.
"""

from __future__ import annotations

import os

# Our one-line errors replace OpenCV's and FFmpeg's console chatter (a user's setting wins).
os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from cli import configure_logging, default_of, verbosity  # noqa: E402
from engines.table import BACKEND_CHOICES, PRECISION_CHOICES  # noqa: E402
from twostream.contract import FLOW_METHODS  # noqa: E402
from twostream.errors import RecognizerError, SourceError  # noqa: E402

logger = logging.getLogger("app")
DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "demo.pt"
EXIT_ERROR = 2


def _size(text: str) -> tuple[int, int]:
    """'320x240' -> (320, 240)."""
    try:
        first, second = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 320x240, got {text!r}") from None
    if first < 1 or second < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return first, second


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _user_pass(text: str) -> tuple[str, str]:
    """'user:pass' -> ('user', 'pass')."""
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise argparse.ArgumentTypeError("expected USER:PASS")
    return user, password


def build_parser() -> argparse.ArgumentParser:
    # Defaults come from the settings dataclasses, the one place they are written.
    from realtime.capture import CaptureSettings
    from realtime.flowstage import FlowSettings
    from realtime.scorer import ScorerSettings
    from realtime.sources import SourceSettings
    from ui.settings import PageSettings

    source, scorer = SourceSettings(), ScorerSettings()  # PageSettings needs a model path: default_of
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=default_of(PageSettings, "default_source"),
                        help="camera index (0), video file, image folder, rtsp:// or http(s):// URL, "
                             "or 'demo' (default: %(default)s)")
    parser.add_argument("--no-ui", action="store_true", help="run headless: JSON lines on stdout")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                        help="model file, or an engine directory from build_engine.py (default: models/demo.pt)")
    parser.add_argument("--backend", choices=BACKEND_CHOICES,
                        default="auto", help="inference backend; auto: TensorRT if CUDA and TensorRT are "
                                             "present, else OpenVINO, else ONNX Runtime, else PyTorch (says why)")
    parser.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                        help="auto: an engine directory's own, fp32 for a model file; int8 needs an engine "
                             "directory (build_engine.py --precision int8)")
    parser.add_argument("--cache-dir", type=Path, default=None, metavar="DIR",
                        help="where engines built from a model file are kept and reused (default: "
                             "$XDG_CACHE_HOME/twostream-recognizer/engines, else ~/.cache/...)")
    parser.add_argument("-v", "--verbose", action="store_true", help="more progress lines on stderr")
    parser.add_argument("--quiet", action="store_true", help="only warnings and errors on stderr")
    parser.add_argument("--hop", type=_positive, default=scorer.hop,
                        help="score every HOP-th frame (default %(default)s)")
    parser.add_argument("--realtime", action="store_true",
                        help="pace files and folders at their own frame rate, as if live (drops when behind)")
    parser.add_argument("--flow", choices=FLOW_METHODS, default=FlowSettings().method,
                        help="optical flow method (default: the one the model was trained with)")
    parser.add_argument("--input-size", type=_positive, default=None, metavar="N",  # None: FlowSettings' (the model's)
                        help="resize frames to N x N, as train.py's --input-size (default: the model's)")
    parser.add_argument("--allow-contract-mismatch", action="store_true",
                        help="run even if --flow/--input-size differ from the model's training (warns)")
    parser.add_argument("--max-frames", type=_positive, default=CaptureSettings().max_frames,
                        help="stop after N frames")
    parser.add_argument("--topk", type=_positive, default=scorer.topk,
                        help="labels per prediction (default %(default)s)")
    parser.add_argument("--threads", type=_positive, default=1,
                        help="torch threads per inference call (default 1: the stages run in parallel)")
    parser.add_argument("--open-timeout", type=float, default=source.open_timeout_s,
                        help="seconds to wait for a URL to open (default %(default)s)")
    parser.add_argument("--read-timeout", type=float, default=source.read_timeout_s,
                        help="seconds without a frame before a live URL counts as lost (default %(default)s)")
    parser.add_argument("--fps", type=float, default=source.folder_fps,
                        help="frame rate of an image folder (default %(default)s)")
    parser.add_argument("--demo-seed", type=int, default=source.demo_seed,
                        help="seed of the demo stream (default %(default)s)")
    parser.add_argument("--demo-size", type=_size, default=source.demo_size, metavar="WxH",
                        help="demo frame size (default %s)" % "x".join(map(str, source.demo_size)))
    ui = parser.add_argument_group("page (without --no-ui)")
    ui.add_argument("--host", default=default_of(PageSettings, "host"),
                    help="address to serve the page on (default %(default)s: this machine only)")
    ui.add_argument("--port", type=_positive, default=default_of(PageSettings, "port"),
                    help="port of the page (default %(default)s)")
    ui.add_argument("--share", action="store_true", default=default_of(PageSettings, "share"),
                    help="also make a public Gradio share link (off by default; warns without --auth)")
    ui.add_argument("--auth", type=_user_pass, default=None, metavar="USER:PASS",
                    help="require this login for the page and every route of the server")
    ui.add_argument("--allow-dir", type=Path, action="append", default=[], metavar="DIR",
                    help="let the page open files under DIR by path (repeatable; default: uploads only)")
    ui.add_argument("--allow-url", action="append", default=[], metavar="PREFIX",
                    help="let the page open stream URLs under PREFIX: same scheme, host and port (default: "
                         "the scheme's), path below PREFIX's, e.g. rtsp://cam.local:8554/cams (repeatable; "
                         "default: none; --source is not limited)")
    ui.add_argument("--max-upload-mb", type=_positive, default=default_of(PageSettings, "max_upload_mb"),
                    metavar="MB", help="largest file the page accepts as an upload, in MiB (default %(default)s)")
    return parser


def settings_from_args(args: argparse.Namespace):
    """The command line mapped onto the runtime's settings -> (PipelineSettings, SourceSettings),
    the same for the headless run and every page session."""
    from realtime.capture import CaptureSettings
    from realtime.flowstage import FlowSettings
    from realtime.pipeline import PipelineSettings
    from realtime.scorer import ScorerSettings
    from realtime.sources import SourceSettings

    input_size = (args.input_size, args.input_size) if args.input_size else None  # (H, W)
    pipeline = PipelineSettings(
        capture=CaptureSettings(max_frames=args.max_frames, realtime=args.realtime),
        flow=FlowSettings(method=args.flow, input_size=input_size,
                          allow_contract_mismatch=args.allow_contract_mismatch),
        scorer=ScorerSettings(hop=args.hop, topk=args.topk))
    source = SourceSettings(open_timeout_s=args.open_timeout, read_timeout_s=args.read_timeout,
                            folder_fps=args.fps, demo_seed=args.demo_seed, demo_size=args.demo_size)
    return pipeline, source


def prediction_record(prediction, judged: list[int]) -> dict:
    """The JSON line for one prediction. ``judged`` = [correct, total] so far over windows
    wholly inside one gesture (updated here for sources that know the truth)."""
    times = prediction.times
    record = {
        "frame": prediction.index,
        "window_start": prediction.window_start,
        "t_capture": round(prediction.t_capture, 6),
        "t_scored": round(prediction.t_scored, 6),
        "label": prediction.label,
        "score": round(prediction.score, 5),
        "topk": [[label, round(p, 5)] for label, p in prediction.topk],
        "latency_ms": {name: round(value, 3) for name, value in zip(times.NAMES, times.as_tuple())},
        "dropped": prediction.dropped,
        "active": prediction.active,
    }
    event = prediction.event
    if event is not None:
        record["event"] = {"type": event.kind, "label": event.label, "start_frame": event.start_frame,
                           "end_frame": event.end_frame, "peak_score": round(event.peak_score, 5)}
    if prediction.true_label is not None:
        record["true_label"] = prediction.true_label
        record["window_pure"] = prediction.window_pure
        if prediction.window_pure:
            judged[0] += prediction.label == prediction.true_label
            judged[1] += 1
        record["accuracy"] = round(judged[0] / judged[1], 4) if judged[1] else None
    return record


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM takes Ctrl-C's clean path


def _configure(args: argparse.Namespace) -> None:
    """Process-wide settings, once at startup: log lines on stderr as plain messages, and
    torch's thread count (process-wide in torch, so no backend sets it)."""
    import torch

    configure_logging(verbosity(args.quiet, args.verbose))
    torch.set_num_threads(args.threads)


def run(args: argparse.Namespace) -> int:
    # Imported here so --help is instant and import errors still become one line.
    from building.load import prepare_model
    from realtime.pipeline import Pipeline
    from realtime.sources import open_source

    _configure(args)
    if not args.no_ui:
        return run_ui(args)
    input_size = (args.input_size, args.input_size) if args.input_size else None
    settings, source_settings = settings_from_args(args)
    source = open_source(args.source, source_settings)
    if not source.live:
        # Fail fast on a bad file before the model loads. A live source opens only when the
        # pipeline starts: whatever it buffered while the model loaded would be stale frames.
        source.open()
    try:
        prepared = prepare_model(args.model, args.backend, args.precision, cache_dir=args.cache_dir,
                                 threads=args.threads, input_size=input_size)
        backend = prepared.open()
    except BaseException:
        source.close()
        raise
    judged = [0, 0]

    def emit(prediction) -> None:
        sys.stdout.write(json.dumps(prediction_record(prediction, judged)) + "\n")
        sys.stdout.flush()  # one line per prediction, as it happens

    try:
        pipeline = Pipeline(source, backend, settings, on_prediction=emit)
    except BaseException:
        source.close()
        raise
    stopped_by = "end of source"
    pipeline.start()
    try:
        while not pipeline.wait(timeout=0.25):
            pass
    except KeyboardInterrupt:
        stopped_by = "interrupt"
    finally:
        unjoined = pipeline.stop()
    if stopped_by != "interrupt" and pipeline.frames_captured == args.max_frames:
        stopped_by = "--max-frames"
    pipeline.wait(timeout=0)  # an error that raced the interrupt still surfaces
    summary = pipeline.stats().to_record()
    summary.update(source=source.description, backend=backend.name, precision=backend.precision,
                   flow=pipeline.flow_method, hop=args.hop, stopped_by=stopped_by,
                   threads_not_joined=list(unjoined))
    print("summary: " + json.dumps(summary), file=sys.stderr)
    return 0 if not unjoined else EXIT_ERROR


def run_ui(args: argparse.Namespace) -> int:
    """Serve the live page until Ctrl-C/SIGTERM. The model is prepared (loaded, and built into
    the engine cache if need be) once here, and one runner is opened to fail fast with one error
    line; each browser session then opens its own runner from it (ui.session says why), with
    no export or compile."""
    from building.load import prepare_model
    from ui.overlay import OverlaySettings
    from ui.page import LivePage
    from ui.session import SessionSettings
    from ui.settings import PageSettings
    from ui.sources import UrlPrefix

    input_size = (args.input_size, args.input_size) if args.input_size else None
    for folder in args.allow_dir:
        if not folder.is_dir():
            raise SourceError(f"--allow-dir {folder}: no such directory")
    allow_urls = tuple(UrlPrefix.parse(text) for text in args.allow_url)
    if args.share and args.auth is None:
        logger.warning("warning: --share without --auth: anyone with the public link can watch, upload "
                       "videos and switch sources (add --auth USER:PASS)")

    prepared = prepare_model(args.model, args.backend, args.precision, cache_dir=args.cache_dir,
                             threads=args.threads, input_size=input_size)
    with prepared.open():
        pass
    pipeline, source = settings_from_args(args)
    session = SessionSettings(pipeline=pipeline, source=source, overlay=OverlaySettings(topk=args.topk))
    page = LivePage(PageSettings(
        model_path=args.model, default_source=args.source, host=args.host, port=args.port, share=args.share,
        auth=args.auth, allow_dirs=tuple(d.resolve() for d in args.allow_dir), allow_urls=allow_urls,
        max_upload_mb=args.max_upload_mb,
        backend=prepared.backend, precision=prepared.precision, session=session), prepared.open)
    try:
        page.serve(lambda line: print(line, flush=True))
    except KeyboardInterrupt:
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return run(args)
    except RecognizerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        # The reader of our stdout went away (e.g. piped into `head`): a normal way to stop.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130  # interrupted before the pipeline ran: nothing to summarise


if __name__ == "__main__":
    sys.exit(main())
