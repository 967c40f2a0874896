"""The Gradio live page: annotated live video, live stats and plots, source controls.

    overlay.py   stateless annotate(frame, prediction, ...) -> display frame
    plots.py     class probabilities over time and a latency histogram, as inline SVG
    panel.py     the stats panel and the model card's summary, as HTML
    sources.py   what a page may open: uploads, --allow-dir paths and --allow-url URLs only
    webcam.py    the browser's webcam as a live Source fed by Gradio's streaming input
    session.py   one browser session's pipeline, its live JPEG and its status
    routes.py    the live-view frame route and /debug/sessions, behind Gradio's own login check
    live_view.js the page's script that fetches the live view's frames, one short request each
    page.py      the Blocks layout, its callbacks, launch() and serve()

The page reads the newest results of each session's pipeline; it never runs inference itself.
"""
