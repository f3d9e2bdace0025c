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


def atomic_image_cache() -> None:
    """Make Gradio's output-image cache safe under concurrent requests.

    Gradio writes an output image to a path named by its content hash with a plain ``write_bytes``: two requests
    returning the same picture rewrite that file in place while another may be streaming it, and that response
    ends short ("Too little data for declared Content-Length"; seen once in the load test). Same content, same
    path: this writes each file once, through a temp file and a rename, so a reader never sees it truncated."""
    from gradio import processing_utils as pu

    from mindeye.atomic import atomic_save

    def save_pil_to_cache(img, cache_dir: str, name: str = "image", format: str = "webp") -> str:
        data = pu.encode_pil_to_bytes(img, format)
        path = (Path(cache_dir) / pu.hash_bytes(data) / f"{name}.{format}").resolve()
        if not path.exists():
            atomic_save(data, path, lambda obj, tmp: Path(tmp).write_bytes(obj))
        return str(path)
    pu.save_pil_to_cache = save_pil_to_cache
