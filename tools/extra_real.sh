#!/bin/sh
# Fetch the extra footage nobody gestures in that the demo model trains on besides
# ../shared/data/videos/real (train.py fit --extra-real DIR). Training only: the validation
# files, and every figure measured on them, stay those of the shared folder.
#
# Both clips come from OpenCV's sample data as Debian packages it (opencv-doc, section main;
# debian/copyright covers them by OpenCV's licence, Apache-2.0 and BSD-3-Clause):
#   vtest.avi  768x576, 10 fps, 80 s: a fixed camera over a campus path, people walking
#              toward, away from and across it (what push/pull fired on in the real
#              validation footage)
#   tree.avi   320x240, 15 fps, 30 s: a hand-held camera on a tree in the wind (camera shake)
# Needs apt-get (Debian or Ubuntu; no root: `apt-get download` only fetches the .deb).
set -eu
out=${1:-data/extra_real}
command -v apt-get >/dev/null || { echo "extra_real.sh: apt-get not found (needs Debian or Ubuntu)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download opencv-doc >/dev/null) || {
    echo "extra_real.sh: apt-get download opencv-doc failed (no package index? run apt-get update)" >&2; exit 2; }
dpkg-deb -x "$work"/opencv-doc_*.deb "$work/x"
mkdir -p "$out"
for clip in vtest.avi tree.avi; do
    cp "$work/x/usr/share/doc/opencv-doc/examples/data/$clip" "$out/$clip"
done
cp "$work/x/usr/share/doc/opencv-doc/copyright" "$out/COPYRIGHT.opencv-doc"
echo "$(ls "$out"/*.avi | wc -l) clips in $out from $(basename "$work"/opencv-doc_*.deb)"
