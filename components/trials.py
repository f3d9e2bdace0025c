"""Trials tab: browse the test set — stimulus, caption, and the brain's response on the cortical surface."""
from __future__ import annotations

import gradio as gr
import numpy as np

from mindeye.data import scenes
from mindeye.engine import MAPS, RESPONSES, VIEWS, Engine

from . import IMAGE_BUTTONS


def _labels_table(labels: dict) -> list[list]:
    rows = []
    if "n_objects" not in labels:
        return rows
    for k in range(int(labels["n_objects"])):
        rows.append([k + 1, scenes.SHAPES[labels["shape"][k]], scenes.COLOUR_NAMES[labels["colour"][k]],
                     scenes.SIZES[labels["size"][k]], f"{labels['x'][k]:.2f}", f"{labels['y'][k]:.2f}"])
    return rows


def build(engine: Engine) -> None:
    n = engine.n_test
    gr.Markdown("Pick a test image: the subject saw it 3 times. On the right, the voxels' responses (betas, "
                "z-scored per session) on an inflated cortical surface — drag to rotate. "
                "Switch the map to see the simulated visual cortex's ground truth.")
    with gr.Row():
        index = gr.Slider(0, n - 1, value=0, step=1, label=f"test image (0-{n - 1})", scale=4)
        rand = gr.Button("random trial", scale=1)
    with gr.Row():
        with gr.Column(scale=2):
            image = gr.Image(buttons=IMAGE_BUTTONS, label="stimulus", type="numpy", height=320, interactive=False, format="png",
                             elem_classes="stimulus")
            caption = gr.Markdown()
            table = gr.Dataframe(headers=["#", "shape", "colour", "size", "x", "y"], label="what is in the scene",
                                 interactive=False, visible=bool(engine.data.labels(engine.test_ids[:1])))
        with gr.Column(scale=3):
            with gr.Row():
                which_map = gr.Dropdown(list(MAPS) if engine.ground_truth else ["response"], value="response",
                                        label="map")
                response = gr.Radio(list(RESPONSES), value=RESPONSES[0], label="response")
                view = gr.Dropdown(list(VIEWS), value="posterior", label="view")
            if engine.has_surface:
                brain = gr.Plot(label="cortical surface (fsaverage5)")
            else:
                gr.Markdown("⚠️ This dataset has no voxel → fsaverage5 mapping, so responses cannot be drawn on "
                            "the surface. Convert with `--vertex_map` to add one.")
                brain = gr.State()

    def show_trial(i):
        t = engine.test_trial(int(i))
        return t.image, f"### “{t.caption}”\nimage id {t.image_id}", _labels_table(t.labels)

    def show_map(i, m, r, v):
        return engine.brain_map(int(i), m, r, v) if engine.has_surface else None

    def random_trial():
        return int(np.random.default_rng().integers(n))

    index.change(show_trial, index, [image, caption, table], api_name="trial")
    for c in (index, which_map, response, view):
        c.change(show_map, [index, which_map, response, view], brain, api_name=False)
    rand.click(random_trial, None, index, api_name=False)
    return show_trial, show_map, [index, which_map, response, view], [image, caption, table], brain
