"""Trials tab: browse the test set: the stimulus, its caption and objects, and the brain's response on the
inflated cortical surface and on flat maps (the three repetitions side by side)."""
from __future__ import annotations

import gradio as gr
import numpy as np

from mindeye.data import scenes
from mindeye.data.errors import DataError
from mindeye.engine import MAPS, RESPONSES, VIEWS, Engine

from . import IMAGE_BUTTONS, brain

HELP = ("**What am I looking at?** A test image the subject saw three times, and the response it evoked in "
        "each voxel of the visual cortex, drawn on an inflated brain seen from behind (drag to turn it; the "
        "back of the brain, where vision starts, faces you). Below, the same voxels on a flat map: the average "
        "of the three repetitions beside each single repetition, so you can see how noisy one look is. "
        "Use ← and → to step through trials.")

# step through trials with the arrow keys while the Trials tab is shown (not while typing in a box)
KEYS_JS = """
() => { if (window.__trialKeys) return; window.__trialKeys = true;
  document.addEventListener('keydown', (e) => {
    if (e.target.closest('input, textarea, select, [contenteditable]') || e.altKey || e.ctrlKey || e.metaKey) return;
    const id = e.key === 'ArrowRight' ? 'trial-next' : e.key === 'ArrowLeft' ? 'trial-prev' : null;
    const b = id && document.getElementById(id);
    if (b && b.offsetParent !== null) { e.preventDefault(); b.click(); }
  }); }
"""
# keep the selected trial in the page's address (?trial=N), so a link or a reload opens the same trial
URL_JS = "(i) => { const u = new URL(window.location); u.searchParams.set('trial', i); history.replaceState(null, '', u); }"


def _labels_table(labels: dict) -> list[list]:
    rows = []
    if "n_objects" not in labels:
        return rows
    for k in range(int(labels["n_objects"])):
        rows.append([k + 1, scenes.SHAPES[labels["shape"][k]], scenes.COLOUR_NAMES[labels["colour"][k]],
                     scenes.SIZES[labels["size"][k]], f"{labels['x'][k]:.2f}", f"{labels['y'][k]:.2f}"])
    return rows


def clamp_trial(engine: Engine, value) -> int:
    """A trial index from anything a user or a URL gives: numbers are clamped to the test set, the rest is 0."""
    try:
        return int(min(max(round(float(value)), 0), engine.n_test - 1))
    except (TypeError, ValueError, OverflowError):
        return 0


def build(engine: Engine):
    n = engine.n_test
    gr.Markdown(HELP)
    with gr.Row(equal_height=True):
        prev = gr.Button("◀ previous", elem_id="trial-prev", scale=1, min_width=90)
        index = gr.Slider(0, n - 1, value=0, step=1, label=f"test image (0-{n - 1})", scale=6)
        nxt = gr.Button("next ▶", elem_id="trial-next", scale=1, min_width=90)
        rand = gr.Button("random", scale=1, min_width=90)
    with gr.Row():
        with gr.Column(scale=2, min_width=280):
            image = gr.Image(buttons=IMAGE_BUTTONS, label="stimulus", type="numpy", height=300, interactive=False,
                             format="png", elem_classes="stimulus")
            caption = gr.Markdown()
            table = gr.Dataframe(headers=["#", "shape", "colour", "size", "x", "y"], label="what is in the scene",
                                 interactive=False, visible=bool(engine.data.labels(engine.test_ids[:1])),
                                 wrap=True)
            with gr.Accordion("find a trial by its caption", open=False):
                query = gr.Textbox(label="words in the caption", placeholder="red circle")
                found = gr.Gallery(label="matching test images (click one)", columns=6, height=220,
                                   allow_preview=False, buttons=[])
        with gr.Column(scale=3, min_width=420):
            with gr.Row():
                which_map = gr.Dropdown(list(MAPS) if engine.ground_truth else ["response", "noise ceiling (ncsnr)"],
                                        value="response", label="map")
                response = gr.Dropdown(list(RESPONSES), value=RESPONSES[0], label="response on the surface")
                view = gr.Dropdown(list(VIEWS), value="posterior", label="view")
            if engine.has_surface:
                view_box = brain.brain_widget(engine)
            else:
                gr.Markdown("⚠️ This dataset has no voxel → fsaverage5 mapping, so responses cannot be drawn on "
                            "the surface. Convert with `--vertex_map` to add one.")
                view_box = gr.State()
    found_ids = gr.State([])

    def show_trial(i):
        t = engine.test_trial(clamp_trial(engine, i))
        return t.image, f"### “{t.caption}”\ntest trial {t.index} · image id {t.image_id}", _labels_table(t.labels)

    def show_map(i, m, r, v):
        if not engine.has_surface:
            return None
        try:
            return brain.update(engine, engine.brain_view(clamp_trial(engine, i), m, r, v))
        except DataError as e:
            raise gr.Error(str(e)) from None

    def step(i, d):
        return (clamp_trial(engine, i) + d) % n

    def search(q):
        hits = engine.find_trials(q)
        return [(im, f"trial {k}") for im, k in zip(engine.thumbnails(hits), hits)], hits

    def pick(evt: gr.SelectData, hits):
        return hits[evt.index] if evt.index is not None and evt.index < len(hits) else gr.skip()

    # always_last: while one draw runs, further changes (a drag, a number being typed) collapse into the newest
    # browsing is light (no model): several students at once, never queued behind a reconstruction
    index.change(show_trial, index, [image, caption, table], api_name="trial", trigger_mode="always_last",
                 concurrency_limit=4, concurrency_id="browse")
    index.change(None, index, None, js=URL_JS, api_name=False)
    for c in (index, which_map, response, view):
        c.change(show_map, [index, which_map, response, view], view_box, api_name="brain_view" if c is index else False,
                 trigger_mode="always_last", concurrency_limit=4, concurrency_id="browse")
    prev.click(lambda i: step(i, -1), index, index, api_name=False)
    nxt.click(lambda i: step(i, 1), index, index, api_name=False)
    rand.click(lambda: int(np.random.default_rng().integers(n)), None, index, api_name=False)
    query.submit(search, query, [found, found_ids], api_name=False)
    found.select(pick, found_ids, index, api_name=False)
    return index, show_trial, show_map, [index, which_map, response, view], [image, caption, table], view_box
