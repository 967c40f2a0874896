"""What the page may open (ui.sources): paths only from uploads and --allow-dir, stream URLs only
under an --allow-url prefix, compared as parsed URLs (scheme, host, port, whole path segments)
with credentials ignored; bad input from the controls is one clear SourceError."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from realtime.sources import STREAM_SCHEMES, SourceSettings, StreamUrlSource
from twostream.errors import SourceError
from ui.sources import (CAMERA, DEFAULT_PORTS, DEMO, SERVER_PATH, UPLOAD, URL, PathNotAllowed, SourcePolicy,
                        UrlNotAllowed, UrlPrefix, source_from_controls)


def test_path_policy(tmp_path):
    uploads, allowed = tmp_path / "uploads", tmp_path / "videos"
    uploads.mkdir(), allowed.mkdir()
    (allowed / "a.mp4").write_bytes(b"x")
    policy = SourcePolicy(upload_dirs=(uploads,), allow_dirs=(allowed,))
    assert policy.check_path(allowed / "a.mp4", uploaded=False) == (allowed / "a.mp4").resolve()
    assert policy.check_path(uploads / "u.mp4", uploaded=True) == (uploads / "u.mp4").resolve()
    for path, uploaded in ((Path("/etc/passwd"), False), (allowed / ".." / "x.mp4", False),
                           (allowed / "a.mp4", True), (Path("/etc/passwd"), True)):
        with pytest.raises(PathNotAllowed):
            policy.check_path(path, uploaded=uploaded)
    with pytest.raises(PathNotAllowed, match="--allow-dir"):
        SourcePolicy().check_path("/tmp/x.mp4", uploaded=False)


def test_every_stream_scheme_has_a_default_port():
    assert set(DEFAULT_PORTS) == set(STREAM_SCHEMES)


@pytest.mark.parametrize("url", [
    "rtsp://cam.local/cams",
    "rtsp://cam.local:554/cams",              # the default port, written out
    "RTSP://CAM.LOCAL/cams/",                 # scheme and host are case-insensitive
    "rtsp://cam.local./cams/1",               # a fully qualified name's trailing dot
    "rtsp://me:secret@cam.local/cams/front",  # credentials do not count
    "rtsp://cam.local/cams/front?channel=2",
])
def test_url_under_the_prefix_is_allowed(url):
    assert UrlPrefix.parse("rtsp://cam.local/cams").allows(url)


@pytest.mark.parametrize("url", [
    "rtsp://cam.local.evil.com/cams",         # a longer host is another host
    "rtsp://evilcam.local/cams",
    "rtsp://cam.local@evil.com/cams",         # 'cam.local' is only a user name here
    "rtsp://cam.local:secret@evil.com/cams",
    "rtsp://cam.local:8554/cams",             # another port
    "rtsps://cam.local/cams",                 # another scheme (and default port)
    "http://cam.local:554/cams",
    "rtsp://cam.local/cams2",                 # path segments are whole
    "rtsp://cam.local/",
    "rtsp://cam.local/cams/../admin",         # dot segments are refused, not resolved
    "rtsp://cam.local/cams/%2e%2e/admin",
    "rtsp://cam.local/cams%2F..%2Fadmin",
    "rtsp://cam.local\\@evil.com/cams",       # parsers disagree on these: refused
    "rtsp://a@b@cam.local/cams",
    "rtsp://cam.local/cams /x",
    "rtsp://cam.local:99999/cams",            # malformed port
    "rtsp:///cams",                           # no host
])
def test_url_outside_the_prefix_is_refused(url):
    assert not UrlPrefix.parse("rtsp://cam.local/cams").allows(url)


def test_prefix_without_a_path_allows_the_whole_host_and_ipv6_works():
    anywhere = UrlPrefix.parse("http://127.0.0.1:8080")
    assert anywhere.allows("http://127.0.0.1:8080/video.mjpg")
    assert not anywhere.allows("http://127.0.0.1:8081/video.mjpg")
    v6 = UrlPrefix.parse("rtsp://[::1]:8554/live")
    assert v6.allows("rtsp://[::1]:8554/live/cam") and str(v6) == "rtsp://[::1]:8554/live"


@pytest.mark.parametrize("text, message", [
    ("cam.local", "unsupported URL scheme"),
    ("ftp://cam.local/", "unsupported URL scheme"),
    ("rtsp://", "no host"),
    ("rtsp://cam.local:port/", "malformed URL"),
    ("rtsp://cam.local/x?y=1", "no query"),
])
def test_bad_prefix_is_one_error_naming_the_flag(text, message):
    with pytest.raises(SourceError, match=f"--allow-url {re.escape(text)}: .*{message}"):
        UrlPrefix.parse(text)


def test_policy_refuses_urls_and_names_the_flag():
    source = StreamUrlSource("rtsp://me:secret@10.0.0.5:554/x")
    with pytest.raises(UrlNotAllowed, match="start it with --allow-url PREFIX") as refused:
        SourcePolicy().check_url(source)
    assert "secret" not in str(refused.value)  # the message shows the URL without its password
    policy = SourcePolicy(allow_urls=(UrlPrefix.parse("rtsp://cam.local:8554/"),))
    with pytest.raises(UrlNotAllowed, match=r"not under an --allow-url prefix \(rtsp://cam.local:8554/\)"):
        policy.check_url(source)
    allowed = StreamUrlSource("rtsp://cam.local:8554/front")
    assert policy.check_url(allowed) is allowed


@pytest.mark.parametrize("kind, text, upload, message", [
    (CAMERA, "zero", None, "camera index must be a number"),
    (URL, "not a url", None, "expected a URL"),
    (URL, "file:///etc/passwd", None, "not a stream URL"),
    (URL, "rtsp://127.0.0.1:22/", None, "refused stream 'rtsp://127.0.0.1:22/'.*--allow-url"),
    (UPLOAD, "", None, "no uploaded file"),
    (UPLOAD, "", "/etc/passwd", "not in the upload folder"),
    (SERVER_PATH, "/etc/passwd", None, "refused"),
    ("nonsense", "", None, "unknown source kind"),
])
def test_controls_refuse_bad_input(kind, text, upload, message):
    with pytest.raises(SourceError, match=message):
        source_from_controls(kind, text, upload, SourcePolicy(), SourceSettings())


def test_controls_build_demo_and_an_allowed_url():
    assert "demo" in source_from_controls(DEMO, "", None, SourcePolicy(), SourceSettings()).description
    policy = SourcePolicy(allow_urls=(UrlPrefix.parse("rtsp://127.0.0.1:8554/cams"),))
    source = source_from_controls(URL, " rtsp://127.0.0.1:8554/cams/a ", None, policy, SourceSettings())
    assert isinstance(source, StreamUrlSource) and source.url == "rtsp://127.0.0.1:8554/cams/a"
