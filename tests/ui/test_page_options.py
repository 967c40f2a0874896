"""app.py's page options at start, before any model loads: --share without --auth warns on
stderr (one line); a bad --allow-url is one error line and exit status 2; a --source that fails
its check is one error line naming the stream, and with none left the page does not start."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.ui.conftest import ROOT


def _app(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "app.py"), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_share_without_auth_warns_and_bad_allow_url_is_one_error(tmp_path):
    missing = tmp_path / "missing.pt"  # the run stops at the model, after the page's checks
    shared = _app("--share", "--model", str(missing))
    lines = shared.stderr.strip().splitlines()
    assert shared.returncode == 2 and len(lines) == 2, shared.stderr
    assert lines[0].startswith("warning: --share without --auth") and "--auth USER:PASS" in lines[0]
    assert lines[1].startswith("error: ") and "missing.pt" in lines[1]

    with_auth = _app("--share", "--auth", "me:pw", "--model", str(missing))
    assert with_auth.returncode == 2 and "warning" not in with_auth.stderr, with_auth.stderr

    bad = _app("--allow-url", "rtsp://cam.local.evil.com:port/", "--model", str(missing))
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --allow-url rtsp://cam.local.evil.com:port/: malformed URL"), \
        bad.stderr


def test_a_source_that_fails_its_check_is_one_line_and_none_left_is_exit_2(tmp_path):
    missing = tmp_path / "missing.pt"
    alone = _app("--source", "door=/nonexistent/x.mp4", "--model", str(missing))
    assert alone.returncode == 2
    assert alone.stderr.strip().splitlines() == ["error: stream door: cannot open video file "
                                                 "'/nonexistent/x.mp4': no such file"], alone.stderr
    # One bad source of two: its line, and the start goes on (to the model, missing here).
    two = _app("--source", "door=/nonexistent/x.mp4", "--source", "demo", "--model", str(missing))
    lines = two.stderr.strip().splitlines()
    assert two.returncode == 2 and len(lines) == 2, two.stderr
    assert lines[0].startswith("error: stream door: ") and "missing.pt" in lines[1]
