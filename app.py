#!/usr/bin/env python
"""Real-time two-stream action recognizer.

Without --no-ui it runs its streams (default: the demo stream) and serves a live page
(Gradio) on http://127.0.0.1:7860 where every browser tab watches them; a tab may also score a
source of its own (at most --max-sessions tabs at once, closed --session-idle-s after the tab
went quiet):

    python app.py                                        # the page, on the demo stream
    python app.py --source door=rtsp://10.0.0.5/cam --source demo --auth me:secret --allow-dir ~/videos

Headless, it prints one JSON line per prediction on stdout and a summary of the stats on
stderr at the end:

    python app.py --source demo --no-ui                  # endless synthetic gestures, live accuracy
    python app.py --source clip.mp4 --no-ui --hop 3      # a file, scored every 3rd frame
    python app.py --source rtsp://127.0.0.1:8554/cam --no-ui --max-frames 500
    python app.py --source 0 --no-ui                     # camera 0

Several streams in one process: --source again for each (NAME=SOURCE names one), or
--sources FILE (one SOURCE or NAME=SOURCE per line; blank lines and # comments allowed). Every
stream has its own capture, flow, rings and feature cache; all share one engine, whose calls
are batched across streams (--max-batch, --batch-wait-ms; --max-batch 1: no batching):

    python app.py --no-ui --source door=rtsp://10.0.0.5/cam --source yard=rtsp://10.0.0.6/cam --source demo
    python app.py --no-ui --sources cameras.txt --max-retries 20

A live URL or camera that drops or stalls is reopened with backoff (0.5 s growing to
--retry-max-s, with jitter), forever or --max-retries times; its windows start afresh after
the gap. Files and folders end at their end; --max-frames counts per stream.

Each line has: stream (its name, or its index), frame and window_start (capture indices of the
window's newest and oldest frames), t_capture and t_scored (time.monotonic() s), label, score,
topk ([label, p] best first), latency_ms (per stage, and total = glass to label, from when the
frame was due), lag_ms (how late the capture read it), dropped, and active (the gesture event
going on, or null); a window where an event starts or ends has event: {type: "start" | "end",
label, start_frame, end_frame, peak_score}; the demo adds true_label, window_pure and the
running accuracy. A stream's state change is a line of its own: {"stream", "status": connecting
| live | reconnecting | ended | failed, "error", "reconnects", "t"}. At the end, stderr has an
'engine: {...}' line (backend, batching) and a 'summary: {...}' line per stream.

End of file, --max-frames, Ctrl-C and SIGTERM stop it cleanly (exit 0). A stream that fails
(an unreadable file, a bad URL, no such camera; a live source out of retries) writes one line,
'error: stream NAME: reason' ('error: reason' when it is the only, unnamed, source), while the
others go on; the exit status is 2 only if every stream failed (the page: if every --source
failed its check at start). Any other error is one line on stderr, 'error: ...', and exit 2.
"""

from __future__ import annotations

import os

# Our one-line errors replace OpenCV's and FFmpeg's console chatter (a user's setting wins).
os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
# FFmpeg's options for every capture OpenCV opens (a user's setting wins). RTSP over TCP is
# OpenCV's own default, kept; fpsprobesize 0 stops FFmpeg from reading ~20 frames of a stream to
# guess its frame rate, which made each RTSP open (and so each reconnect) take 1.25 s instead of
# 0.44 s here. Files report the same fps with it (every clip in ../shared/data/videos checked).
os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp|fpsprobesize;0")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from cli import CommandParser, JsonLines, check_port_free, configure_logging, default_of  # noqa: E402
from cli import at_least_one, frame_size, limit_malloc_arenas, non_negative, non_negative_float  # noqa: E402
from cli import port_number, positive_seconds, user_and_password, verbosity  # noqa: E402
from engines.table import BACKEND_CHOICES, PRECISION_CHOICES  # noqa: E402
from twostream.contract import FLOW_METHODS  # noqa: E402
from twostream.devices import DEVICES, resolve_device  # noqa: E402
from twostream.errors import RecognizerError, SourceError  # noqa: E402

logger = logging.getLogger("app")
DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "demo.pt"
EXIT_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    # Defaults come from the settings dataclasses, the one place they are written.
    from realtime.batching import BatchSettings
    from realtime.capture import CaptureSettings
    from realtime.flowstage import FlowSettings
    from realtime.scorer import ScorerSettings
    from realtime.sources import SourceSettings
    from realtime.streams import RetryPolicy
    from ui.settings import PageSettings
    from ui.tabs import SessionLimits

    source, scorer = SourceSettings(), ScorerSettings()  # PageSettings needs a model path: default_of
    batch, retry, limits = BatchSettings(), RetryPolicy(), SessionLimits()
    parser = CommandParser(prog="app.py", description=__doc__.split("\n\n")[0],
                           epilog=__doc__.strip().split("\n\n")[-1],  # the exit statuses
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", action="append", default=[], metavar="[NAME=]SOURCE",
                        help="camera index (0), video file, image folder, rtsp:// or http(s):// URL, or 'demo'; "
                             "repeat for several streams (the page shows every one), NAME= names one "
                             "(default: %s)" % default_of(PageSettings, "default_source"))
    parser.add_argument("--sources", type=Path, default=None, metavar="FILE",
                        help="more sources, one [NAME=]SOURCE per line (blank lines and # comments allowed)")
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
    parser.add_argument("--hop", type=at_least_one, default=scorer.hop,
                        help="score every HOP-th frame (default %(default)s)")
    parser.add_argument("--realtime", action="store_true",
                        help="pace files and folders at their own frame rate, as if live (drops when behind, "
                             "and skips frames to keep up with the file's clock)")
    parser.add_argument("--flow", choices=FLOW_METHODS, default=FlowSettings().method,
                        help="optical flow method (default: the one the model was trained with)")
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="where torch flow (tvl1-torch) and the torch backend run (default auto: CUDA if present)")
    parser.add_argument("--input-size", type=at_least_one, default=None, metavar="N",  # None: FlowSettings' (the model's)
                        help="resize frames to N x N, as train.py's --input-size (default: the model's)")
    parser.add_argument("--allow-contract-mismatch", action="store_true",
                        help="run even if --flow/--input-size differ from the model's training (warns)")
    parser.add_argument("--max-frames", type=at_least_one, default=CaptureSettings().max_frames,
                        help="stop after N frames")
    parser.add_argument("--topk", type=at_least_one, default=scorer.topk,
                        help="labels per prediction (default %(default)s)")
    parser.add_argument("--threads", type=at_least_one, default=1,
                        help="torch threads per inference call (default 1: the stages run in parallel)")
    parser.add_argument("--open-timeout", type=float, default=source.open_timeout_s,
                        help="seconds to wait for a URL to open (default %(default)s)")
    parser.add_argument("--read-timeout", type=float, default=source.read_timeout_s,
                        help="seconds without a frame before a live URL counts as lost (default %(default)s)")
    parser.add_argument("--fps", type=float, default=source.folder_fps,
                        help="frame rate of an image folder (default %(default)s)")
    parser.add_argument("--demo-seed", type=int, default=source.demo_seed,
                        help="seed of the demo stream (default %(default)s)")
    parser.add_argument("--demo-size", type=frame_size, default=source.demo_size, metavar="WxH",
                        help="demo frame size (default %s)" % "x".join(map(str, source.demo_size)))
    streams = parser.add_argument_group("several streams")
    streams.add_argument("--max-batch", type=at_least_one, default=batch.max_batch,
                         help="most frames of all streams in one engine call (default %(default)s; 1: no batching)")
    streams.add_argument("--batch-wait-ms", type=non_negative_float, default=batch.max_wait_ms,
                         help="longest a call waits for other streams' calls to join it (default %(default)s ms)")
    streams.add_argument("--max-retries", type=non_negative, default=retry.max_retries,
                         help="reopen attempts of a dropped live source before its stream fails "
                              "(default: retry forever)")
    streams.add_argument("--retry-max-s", type=positive_seconds, default=retry.max_s,
                         help="longest wait between reopen attempts (default %(default)s s)")
    ui = parser.add_argument_group("page (without --no-ui)")
    ui.add_argument("--host", default=default_of(PageSettings, "host"),
                    help="address to serve the page on (default %(default)s: this machine only)")
    ui.add_argument("--port", type=port_number, default=default_of(PageSettings, "port"),
                    help="port of the page (default %(default)s)")
    ui.add_argument("--share", action="store_true", default=default_of(PageSettings, "share"),
                    help="also make a public Gradio share link (off by default; warns without --auth)")
    ui.add_argument("--auth", type=user_and_password, default=None, metavar="USER:PASS",
                    help="require this login for the page and every route of the server")
    ui.add_argument("--allow-dir", type=Path, action="append", default=[], metavar="DIR",
                    help="let the page open files under DIR by path (repeatable; default: uploads only)")
    ui.add_argument("--allow-url", action="append", default=[], metavar="PREFIX",
                    help="let the page open stream URLs under PREFIX: same scheme, host and port (default: "
                         "the scheme's), path below PREFIX's, e.g. rtsp://cam.local:8554/cams (repeatable; "
                         "default: none; --source is not limited)")
    ui.add_argument("--max-upload-mb", type=at_least_one, default=default_of(PageSettings, "max_upload_mb"),
                    metavar="MB", help="largest file the page accepts as an upload, in MiB (default %(default)s)")
    ui.add_argument("--max-sessions", type=non_negative, default=limits.max_sessions, metavar="N",
                    help="tabs that may score a source of their own at once, on the shared engine "
                         "(default %(default)s: one per CPU core; 0: none)")
    ui.add_argument("--session-idle-s", type=positive_seconds, default=limits.idle_s, metavar="S",
                    help="close a tab's own source after S s without a sign of the tab, or S s after it "
                         "ended (default %(default)s)")
    return parser


def settings_from_args(args: argparse.Namespace):
    """The command line mapped onto the runtime's settings -> (PipelineSettings, SourceSettings,
    BatchSettings, RetryPolicy), the same for the headless run, the page's streams and every
    tab's own source."""
    from realtime.batching import BatchSettings
    from realtime.capture import CaptureSettings
    from realtime.flowstage import FlowSettings
    from realtime.pipeline import PipelineSettings
    from realtime.scorer import ScorerSettings
    from realtime.sources import SourceSettings
    from realtime.streams import RetryPolicy

    input_size = (args.input_size, args.input_size) if args.input_size else None  # (H, W)
    pipeline = PipelineSettings(
        capture=CaptureSettings(max_frames=args.max_frames, realtime=args.realtime),
        flow=FlowSettings(method=args.flow, input_size=input_size,
                          allow_contract_mismatch=args.allow_contract_mismatch, device=args.device),
        scorer=ScorerSettings(hop=args.hop, topk=args.topk))
    source = SourceSettings(open_timeout_s=args.open_timeout, read_timeout_s=args.read_timeout,
                            folder_fps=args.fps, demo_seed=args.demo_seed, demo_size=args.demo_size)
    initial = min(RetryPolicy().initial_s, args.retry_max_s)  # a cap below the first delay lowers it
    return (pipeline, source, BatchSettings(max_batch=args.max_batch, max_wait_ms=args.batch_wait_ms),
            RetryPolicy(initial_s=initial, max_s=args.retry_max_s, max_retries=args.max_retries))


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM takes Ctrl-C's clean path


def _configure(args: argparse.Namespace) -> None:
    """Process-wide settings, once at startup, before any stream or server thread: log lines on
    stderr as plain messages, torch's thread count (process-wide in torch, so no backend sets
    it), and few malloc arenas (cli.limit_malloc_arenas says why)."""
    import torch

    configure_logging(verbosity(args.quiet, args.verbose))
    torch.set_num_threads(args.threads)
    limit_malloc_arenas()


def source_specs_of(args: argparse.Namespace):
    """The streams the command line names (SourceSpec each); the page's default without any."""
    from realtime.streamset import source_specs
    from ui.settings import PageSettings

    sources = args.source or ([] if args.sources else [default_of(PageSettings, "default_source")])
    return source_specs(sources, args.sources)


def _failure(specs, status) -> str:
    """A failed stream's error line: plain for a lone unnamed source (its message names it)."""
    plain = len(specs) == 1 and not specs[0].named
    return f"error: {status.error}" if plain else f"error: stream {status.name}: {status.error}"


def _reporters(specs, lines: JsonLines):
    """(on_prediction, on_status) callbacks of the headless run: JSON lines on stdout, and one
    'error:' line on stderr when a stream fails."""
    from realtime.records import prediction_record, status_record
    from realtime.streams import StreamState

    judged = {spec.name: [0, 0] for spec in specs}

    def on_prediction(name: str, prediction) -> None:
        lines.write(prediction_record(prediction, judged[name], name))

    def on_status(status) -> None:
        lines.write(status_record(status))
        if status.state is StreamState.FAILED:
            lines.error(_failure(specs, status))

    return on_prediction, on_status


def _open_backend(args: argparse.Namespace, sources: dict):
    """The model prepared (loaded, and built into the engine cache if need be) and opened, once,
    for every stream; if that fails, the checked ``sources`` are closed."""
    from building.load import prepare_model

    input_size = (args.input_size, args.input_size) if args.input_size else None
    try:
        return prepare_model(args.model, args.backend, args.precision, cache_dir=args.cache_dir,
                             threads=args.threads, input_size=input_size, device=args.device).open()
    except BaseException:
        for source in sources.values():
            source.close()
        raise


def run(args: argparse.Namespace) -> int:
    args.device = resolve_device(args.device)  # "auto" -> cuda or cpu; cuda without CUDA: one error line
    if not args.no_ui:
        # First of all: a port that is taken must not cost the wait for the model to load.
        check_port_free(args.host, args.port)
    _configure(args)
    if not args.no_ui:
        return run_ui(args)
    return run_headless(args)


def run_headless(args: argparse.Namespace) -> int:
    """Every named source as a supervised stream on one shared, batching engine (realtime.
    streamset); JSON lines on stdout, summaries on stderr. Exit 2 only if every stream failed."""
    # Imported here so --help is instant and import errors still become one line.
    from realtime.records import summary_record
    from realtime.stats import PipelineStats
    from realtime.streams import StreamState
    from realtime.streamset import StreamSet, check_sources

    settings, source_settings, batch, retry = settings_from_args(args)
    specs = source_specs_of(args)
    lines = JsonLines()
    on_prediction, on_status = _reporters(specs, lines)
    sources, failed = check_sources(specs, source_settings, on_status)
    if not sources:
        return EXIT_ERROR
    backend = _open_backend(args, sources)
    try:
        streamset = StreamSet(backend, settings, batch=batch, retry=retry,
                              on_prediction=on_prediction, on_status=on_status)
    except BaseException:
        backend.close()
        for source in sources.values():
            source.close()
        raise
    for spec in specs:
        if spec.name in sources:
            streamset.add(spec.name, sources[spec.name])
    interrupted = False
    streamset.start()
    try:
        while not streamset.wait(timeout=0.25) and not lines.broken.is_set():
            pass
    except KeyboardInterrupt:
        interrupted = True
    finally:
        streamset.close()  # stops every stream (draining queued frames), then the engine
    if lines.broken.is_set():
        raise BrokenPipeError  # the reader went away: main() ends quietly, as it always has
    if streamset.all_failed:
        return EXIT_ERROR  # each stream said why in its error line

    engine = {"backend": backend.name, "precision": backend.precision, "device": backend.device,
              "batching": streamset.stats().to_record()}
    print("engine: " + json.dumps(engine), file=sys.stderr)
    empty = PipelineStats().snapshot(0)
    unjoined_any = False
    for spec in specs:
        stream = None if spec.name in failed else streamset.stream(spec.name)
        status = failed[spec.name] if stream is None else stream.status()
        unjoined = [] if stream is None else list(stream.stop(timeout=0))  # stopped: what is still alive
        unjoined_any = unjoined_any or bool(unjoined)
        if status.state is StreamState.FAILED:
            stopped_by = "failed"
        elif interrupted:
            stopped_by = "interrupt"
        else:
            stopped_by = "--max-frames" if stream.frames_captured == args.max_frames else "end of source"
        record = summary_record(status, empty if stream is None else stream.stats(),
                                source=spec.spec if stream is None else stream.source.description,
                                backend=backend.name, precision=backend.precision, flow=streamset.flow_spec.method,
                                hop=args.hop, stopped_by=stopped_by, threads_not_joined=unjoined)
        print("summary: " + json.dumps(record), file=sys.stderr)
    return EXIT_ERROR if unjoined_any else 0


def run_ui(args: argparse.Namespace) -> int:
    """Run the command line's streams on one shared engine and serve the page over them until
    Ctrl-C/SIGTERM (ui.serve). Sources are checked first, as headless: one that fails is one
    error line and the others go on (exit 2 when none is left); then the model is prepared
    (loaded, and built into the engine cache if need be) and opened, once."""
    from realtime.streamset import check_sources
    from ui.overlay import OverlaySettings
    from ui.serve import serve_page
    from ui.settings import PageSettings
    from ui.sources import UrlPrefix
    from ui.tabs import SessionLimits
    from ui.views import ViewSettings

    for folder in args.allow_dir:
        if not folder.is_dir():
            raise SourceError(f"--allow-dir {folder}: no such directory")
    allow_urls = tuple(UrlPrefix.parse(text) for text in args.allow_url)
    if args.share and args.auth is None:
        logger.warning("warning: --share without --auth: anyone with the public link can watch, upload "
                       "videos and start sources (add --auth USER:PASS)")
    pipeline, source_settings, batch, retry = settings_from_args(args)
    specs = source_specs_of(args)
    sources, _ = check_sources(specs, source_settings, lambda failed: print(_failure(specs, failed), file=sys.stderr))
    if not sources:
        return EXIT_ERROR
    settings = PageSettings(
        model_path=args.model, host=args.host, port=args.port, share=args.share, auth=args.auth,
        allow_dirs=tuple(d.resolve() for d in args.allow_dir), allow_urls=allow_urls,
        max_upload_mb=args.max_upload_mb, backend=args.backend, source=source_settings,
        views=ViewSettings(overlay=OverlaySettings(topk=args.topk)),
        limits=SessionLimits(max_sessions=args.max_sessions, idle_s=args.session_idle_s))
    backend = _open_backend(args, sources)
    try:
        serve_page(backend, [(spec, sources[spec.name]) for spec in specs if spec.name in sources], settings,
                   pipeline, batch, retry, ready=lambda line: print(line, flush=True))
    except KeyboardInterrupt:
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
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
    finally:
        signal.signal(signal.SIGTERM, previous)  # a caller's own handling (tests call main in-process)


if __name__ == "__main__":
    sys.exit(main())
