"""What the commands share (cli.py): a bad command line is one error line and a hint, exit 2,
for every command and subcommand; a server address that is taken is found before anything loads."""

from __future__ import annotations

import platform
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import app
import bench
import cli
import build_engine
import train

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("main, argv, error, hint", [
    (app.main, ["--bogus"], "error: unrecognized arguments: --bogus", "app.py"),
    (app.main, ["--hop", "0"], "error: argument --hop: must be >= 1, got 0", "app.py"),
    (app.main, ["--max-frames", "many"], "error: argument --max-frames: expected a whole number >= 1, got 'many'",
     "app.py"),
    (app.main, ["--port", "70000"], "error: argument --port: ports go up to 65535, got 70000", "app.py"),
    (app.main, ["--backend", "nope"], "error: argument --backend: invalid choice: 'nope'", "app.py"),
    (app.main, ["--max-sessions", "-1"], "error: argument --max-sessions: must be >= 0, got -1", "app.py"),
    (app.main, ["--session-idle-s", "0"], "error: argument --session-idle-s: must be > 0, got 0", "app.py"),
    (bench.main, ["--size", "big"], "error: argument --size: expected WIDTHxHEIGHT", "bench.py"),
    (build_engine.main, ["--model", "m.pt"], "error: the following arguments are required: --backend, --precision",
     "build_engine.py"),
    (train.main, [], "error: the following arguments are required: command", "train.py"),
    (train.main, ["teach"], "error: argument command: invalid choice: 'teach'", "train.py"),
    (train.main, ["fit", "--out", "x.pt", "--lr", "fast"], "error: argument --lr: invalid float value: 'fast'",
     "train.py fit"),
    (train.main, ["evaluate"], "error: the following arguments are required: --model", "train.py evaluate"),
    (train.main, ["tune-events", "--model", "m.pt", "--streams", "two"], "error: argument --streams: invalid int",
     "train.py tune-events"),
])
def test_a_bad_command_line_is_one_error_line_and_a_hint(main, argv, error, hint, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert out == "" and len(lines) == 2, err
    assert lines[0].startswith(error), lines[0]
    assert lines[1] == f"(see: python {hint} --help)"


def test_the_real_process_prints_no_usage_block():
    done = subprocess.run([sys.executable, "app.py", "--source"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["error: argument --source: expected one argument",
                                        "(see: python app.py --help)"]


@pytest.fixture
def taken_port():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_a_taken_port_is_one_line_before_the_model_loads(taken_port):
    """A model file that is not there would be an error of its own: the port check comes first."""
    done = subprocess.run([sys.executable, "app.py", "--port", str(taken_port), "--model", "/nonexistent/model.pt"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"error: cannot serve on 127.0.0.1:{taken_port}: the port is already in use "
                                        "(another server running? pick another --port)"]
    assert done.stdout == ""


@pytest.mark.parametrize("host, words", [
    ("192.0.2.1", "192.0.2.1 is not an address of this machine"),  # TEST-NET-1: nobody's address
    ("no-such-host.invalid", "--host no-such-host.invalid: unknown host"),
])
def test_a_host_that_is_not_this_machine_is_one_line(host, words, capsys):
    assert app.main(["--host", host, "--model", "/nonexistent/model.pt"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and words in err, err


def test_app_main_gives_the_callers_sigterm_handling_back():
    """app.main turns SIGTERM into Ctrl-C's clean path while it runs, and only then: a handler
    left behind is inherited by every process the caller forks later (twostream.data's clip
    workers reset it, see test_data.py)."""
    before = signal.getsignal(signal.SIGTERM)
    assert app.main(["--host", "no-such-host.invalid", "--model", "/nonexistent/model.pt"]) == 2
    assert signal.getsignal(signal.SIGTERM) is before


def test_malloc_arenas_are_capped_unless_the_user_set_them(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert cli.limit_malloc_arenas() is False  # the user's setting wins
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=4")
    assert cli.limit_malloc_arenas() is False
    monkeypatch.delenv("GLIBC_TUNABLES")
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc: there is no arena cap to set")
    assert cli.limit_malloc_arenas() is True
