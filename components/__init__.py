"""One module per app tab: layout and callbacks, calling mindeye.engine only."""
from pathlib import Path

import plotly

# the image toolbars: no Share button (it works only on Hugging Face Spaces and errors everywhere else)
IMAGE_BUTTONS = ["download", "fullscreen"]

# the plotly.js that ships with the plotly package, served by this app (no CDN: the app never needs the network)
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
PLOTLY_HEAD = f'<script src="gradio_api/file={PLOTLY_JS}"></script>'


def serve_file(path) -> None:
    """Let the browser fetch this one file (gradio_api/file=PATH); nothing else of the disk becomes servable."""
    import gradio as gr
    gr.set_static_paths([Path(path)])
