"""The Gradio live page: annotated video over MJPEG, live stats and plots, source controls.

    overlay.py   stateless annotate(frame, prediction, ...) -> display frame
    plots.py     class probabilities over time and a latency histogram, as inline SVG
    panel.py     the stats panel and the model card's summary, as HTML
    sources.py   what a page may open: sources from the controls, uploads and --allow-dir only
    webcam.py    the browser's webcam as a live Source fed by Gradio's streaming input
    session.py   one browser session's pipeline, its live JPEG and its status
    page.py      the Blocks layout, its callbacks, the MJPEG and /debug/sessions routes, serve()

The page reads the newest results of each session's pipeline; it never runs inference itself.
"""
