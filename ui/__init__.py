"""The Gradio live page: the process's streams in a grid, the one a tab watches large with its
stats and plots, and a tab's own source, capped and reaped.

    overlay.py   stateless annotate(frame, prediction, ...) -> display frame
    plots.py     class probabilities over time and a latency histogram, as inline SVG
    panel.py     the stats panel and the model card's summary, as HTML
    eventlog.py  the last gesture events, as HTML
    grid.py      the grid of streams (thumbnail, state, last error, stats) and the status line
    views.py     a stream's view: its live JPEG and thumbnail, encoded once whoever asks
    sources.py   what a tab may open: uploads, --allow-dir paths and --allow-url URLs only
    webcam.py    the browser's webcam as a live Source fed by Gradio's streaming input
    tabs.py      every tab's record; own-source session streams, capped and reaped
    routes.py    the live-view and thumbnail routes and /debug/sessions, behind Gradio's login check
    live_view.js the page's script that fetches frames and thumbnails, one short request each
    page.py      the Blocks layout, its callbacks, launch() and serve()
    serve.py     start-up: the process's streams on one shared engine, then the page over them
    settings.py  the page's settings (read by app.py without importing Gradio)

The page reads the newest results of running streams; it never runs inference itself.
"""
