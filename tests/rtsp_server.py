"""A small real RTSP server for tests: GStreamer's gst-rtsp-server on 127.0.0.1.

Run it under the system Python, which has PyGObject (``gi``):

    /usr/bin/python3 tests/rtsp_server.py [PORT]        # PORT 0 (default): any free port

It serves a moving test pattern (videotestsrc 'ball', 320x240 at 25 fps), H.264 from x264enc,
prints one line 'READY rtsp://127.0.0.1:PORT/test' once it listens, and serves until killed.
Needs: gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-{base,good,ugly}.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

PIPELINE = (
    "( videotestsrc is-live=true pattern=ball "
    "! video/x-raw,width=320,height=240,framerate=25/1 "
    "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 "
    "! rtph264pay name=pay0 pt=96 config-interval=1 )"
)


def main() -> int:
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(sys.argv[1] if len(sys.argv) > 1 else "0")
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(PIPELINE)
    factory.set_shared(True)  # one encoder for every client
    server.get_mount_points().add_factory("/test", factory)
    if server.attach(None) == 0:
        print("cannot listen", file=sys.stderr)
        return 1
    print(f"READY rtsp://127.0.0.1:{server.get_bound_port()}/test", flush=True)
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
