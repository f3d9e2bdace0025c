"""UMAP tab: where do the brain's predictions land in CLIP space? The test images' CLIP embeddings and the
brain-predicted ones on one 2-D UMAP, each pair joined by a line, coloured by a scene attribute."""
from __future__ import annotations

import gradio as gr

from mindeye.data.errors import DataError
from mindeye.engine import Engine

from . import IMAGE_BUTTONS

HELP = ("**What am I looking at?** Each circle is one test image, placed by what CLIP sees in it; each cross is "
        "MindEye's guess of that placement from the brain response alone, and a thin line joins the two (hover for "
        "the trial and its caption). The guesses usually form a cloud of their own, because training only asks each "
        "guess to be closer to its own image than to the other images, not to land on it: so compare the colour "
        "groups in the two clouds rather than the lines' lengths. UMAP squashes a high-dimensional space into 2-D, "
        "so read neighbourhoods, not distances across the map.")


def build(engine: Engine):
    n = engine.n_test
    targets = [t for t, m in (("final", "mindeye_final"), ("hidden", "mindeye_hidden")) if m in engine.bundle.models]
    colourings = engine.umap_colourings()
    gr.Markdown(HELP)
    with gr.Row():
        target = gr.Radio(targets, value=targets[0], label="CLIP space", scale=1)
        colour_by = gr.Dropdown(colourings, value=colourings[0], label="colour points by", scale=2)
        highlight = gr.Slider(0, n - 1, value=0, step=1, label=f"highlight test trial (0-{n - 1})", scale=3)
    go = gr.Button("draw the map", variant="primary")
    with gr.Row():
        plot = gr.Plot(label="CLIP embeddings of the test images (●) and of their brains' predictions (✕)", scale=4)
        with gr.Column(scale=1, min_width=200):
            seen = gr.Image(buttons=IMAGE_BUTTONS, label="highlighted trial", type="numpy", interactive=False, height=200,
                            elem_classes="stimulus")
            caption = gr.Markdown()
    status = gr.Markdown()

    def run(tgt, colour, h, progress=gr.Progress()):
        try:
            h = int(h)
            t = engine.test_trial(h)
            progress(0, desc="embedding the test images and brains")
            fresh = []

            def log(msg):
                fresh.append(msg)
                progress(0.3, desc=f"{msg}; the first map of a session also compiles UMAP: about a minute")
            fig = engine.umap_figure(tgt, colour, highlight=h, log=log)
        except (TypeError, ValueError):
            raise gr.Error("the highlighted trial must be a whole number") from None
        except DataError as e:
            raise gr.Error(str(e)) from None
        note = (f"{2 * n} points ({n} images + {n} brain predictions), one UMAP fitted on both sets, random_state 0; "
                + ("fitted just now and cached." if fresh else "read from the cache."))
        return fig, t.image, f"**trial {h}** · image {t.image_id}\n\n“{t.caption}”", note

    go.click(run, [target, colour_by, highlight], [plot, seen, caption, status], api_name="umap", concurrency_limit=1,
             concurrency_id="umap")
    for c in (colour_by, highlight):
        c.change(run, [target, colour_by, highlight], [plot, seen, caption, status], api_name=False,
                 concurrency_limit=1, concurrency_id="umap")
    return highlight
