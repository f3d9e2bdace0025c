"""Your image tab (SimNSD only): compose a scene, let the simulated visual cortex respond to it, and decode the
response back with the same models as the other tabs: the whole loop, image -> brain -> image, on one screen."""
from __future__ import annotations

import gradio as gr
import numpy as np

from mindeye.data import scenes
from mindeye.data.errors import DataError
from mindeye.engine import VIEWS, Engine

from . import IMAGE_BUTTONS, brain

HELP = ("**What am I looking at?** Build a picture from shapes and colours (or draw or upload one). The simulated visual cortex "
        "\"looks\" at it and responds, voxel by voxel, with as much measurement noise as you choose (0 is a "
        "perfect brain scanner; 1 is one real-looking trial). MindEye then sees only that response and tries to "
        "draw the picture back, and to find the test images it is most like. Try moving an object to the "
        "other side, or turning the noise up: what survives?")
SOURCES = ("compose a scene", "draw a picture", "upload a picture")
NOISE_INFO = "0 = noise-free · 0.58 = an average of 3 repetitions (like the test set) · 1 = a single trial"
DEFAULTS = (("star", "red", "large", 0.3, 0.4), ("circle", "blue", "medium", 0.72, 0.7),
            ("square", "yellow", "small", 0.7, 0.25))


def _hex(rgb) -> str:
    return "#%02x%02x%02x" % tuple(int(c) for c in rgb)


CANVAS = 320  # the drawing canvas's side in pixels


def canvas_for(background: str):
    """A fresh canvas: SimNSD's background texture to draw on (or plain white)."""
    if background == "white":
        return np.full((CANVAS, CANVAS, 3), 255, np.uint8)
    return scenes.background_image(background, CANVAS)


def drawing(value):
    """The Sketchpad's picture (its composite; transparent parts on white) as uint8 ``[H, W, 3]``, or None when
    nothing has been drawn on the canvas yet."""
    if value is None:
        return None
    img = value.get("composite") if isinstance(value, dict) else value
    if img is None:
        return None
    img = np.asarray(img)
    drawn = None
    if isinstance(value, dict):
        strokes = [np.asarray(x) for x in value.get("layers") or [] if x is not None]
        if strokes and all(x.ndim == 3 and x.shape[-1] == 4 for x in strokes):
            drawn = any(x[..., 3].any() for x in strokes)
        elif value.get("background") is not None:
            drawn = not np.array_equal(np.asarray(value["background"])[..., :3], img[..., :3])
    if img.ndim == 3 and img.shape[-1] == 4:
        alpha = img[..., 3:4].astype(np.float32) / 255
        img = (img[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    if img.ndim != 3:
        return None
    if drawn is None:
        drawn = bool((img[..., :3] < 250).any())
    return img[..., :3] if drawn else None


def _object_row(k: int, shape, colour, size, x, y):
    with gr.Group():
        on = gr.Checkbox(k == 0, label=f"object {k + 1}" + (" (always in the scene)" if k == 0 else ""),
                         interactive=k > 0)
        with gr.Row():
            sh = gr.Dropdown(list(scenes.SHAPES), value=shape, label="shape", min_width=90)
            co = gr.Dropdown(list(scenes.COLOUR_NAMES), value=colour, label="colour", min_width=90)
            si = gr.Dropdown(list(scenes.SIZES), value=size, label="size", min_width=90)
        with gr.Row():
            xs = gr.Slider(0.1, 0.9, value=x, step=0.01, label="x (left → right)")
            ys = gr.Slider(0.1, 0.9, value=y, step=0.01, label="y (top → bottom)")
    return [on, sh, co, si, xs, ys]


def build(engine: Engine):
    gr.Markdown(HELP)
    with gr.Row():
        with gr.Column(scale=2, min_width=340):
            source = gr.Radio(SOURCES, value=SOURCES[0], label="what the brain sees")
            with gr.Group(visible=True) as compose_box:
                background = gr.Dropdown(list(scenes.BACKGROUNDS), value="grass", label="background")
                rows = [c for k, d in enumerate(DEFAULTS) for c in _object_row(k, *d)]
            with gr.Group(visible=False) as draw_box:
                draw_bg = gr.Dropdown(["white", *scenes.BACKGROUNDS], value="grass",
                                      label="canvas (a new one clears the drawing)")
                sketch = gr.Sketchpad(value=canvas_for("grass"), type="numpy", image_mode="RGB",
                                      canvas_size=(CANVAS, CANVAS), fixed_canvas=True,
                                      height=340, label="draw with SimNSD's colours (filled blobs read best)",
                                      brush=gr.Brush(default_size=18, colors=[_hex(c) for c in scenes.COLOURS.values()],
                                                     color_mode="fixed"), layers=False, buttons=[], elem_id="sketch")
            with gr.Group(visible=False) as upload_box:
                upload = gr.Image(type="numpy", sources=["upload", "clipboard"], label="your picture (up to 10 MB)",
                                  height=220, buttons=[])
                gr.Markdown("The early visual areas see its pixels; the higher ones see the scene the judge reads "
                            "in it (shown under the result), since the simulated cortex knows only SimNSD's shapes.")
            with gr.Row():
                noise = gr.Slider(0, 1, value=0.58, step=0.01, label="measurement noise", info=NOISE_INFO, scale=3)
                seed = gr.Number(0, precision=0, label="seed", scale=1, min_width=80)
            go = gr.Button("show it to the brain, then decode", variant="primary")
            with gr.Row():
                seen = gr.Image(buttons=IMAGE_BUTTONS, label="your scene", type="numpy", height=200, interactive=False,
                                elem_classes="stimulus", min_width=100)
                low = gr.Image(buttons=IMAGE_BUTTONS, label="low-level guess (blurry layout)", type="numpy", height=200,
                               interactive=False, elem_classes="stimulus", min_width=100)
                pick = gr.Image(buttons=IMAGE_BUTTONS, label="MindEye's reconstruction", type="numpy", height=200,
                                interactive=False, elem_classes="stimulus", min_width=100)
            caption = gr.Markdown()
        with gr.Column(scale=3, min_width=420):
            view = gr.Dropdown(list(VIEWS), value="posterior", label="view")
            view_box = brain.brain_widget(engine) if engine.has_surface else gr.State()
            nearest = gr.Gallery(label="nearest test images to the brain's prediction (image retrieval)", columns=6,
                                 height=170, allow_preview=False, buttons=[])
    last = gr.State(None)

    def run(src, picture, drawn, bg, *args, progress=gr.Progress()):
        *obj_args, nz, sd, v = args
        objects = [dict(shape=sh, colour=co, size=si, x=x, y=y)
                   for on, sh, co, si, x, y in (obj_args[i:i + 6] for i in range(0, len(obj_args), 6)) if on]
        try:
            progress(0.05, desc="the simulated cortex looks at your scene (the first time: a few seconds to build it)")
            if src == "upload a picture":
                if picture is None:
                    raise DataError("upload a picture first (or switch back to composing a scene)")
                scene = engine.scene_from_picture(picture)
            elif src == "draw a picture":
                drawn = drawing(drawn)
                if drawn is None:
                    raise DataError("draw something first: pick a colour and paint a shape on the canvas")
                scene = engine.scene_from_picture(drawn)
            else:
                scene = engine.compose(bg, objects)
            resp = engine.respond(scene, float(nz), int(sd or 0))
            progress(0.3, desc="MindEye decodes the response")
            rec = engine.decode(resp.betas, n=4, seed=int(sd or 0))
            ids, scores = engine.retrieve_voxels(resp.betas, k=6)
            view_json = brain.update(engine, engine.scene_view(resp, v)) if engine.has_surface else None
        except DataError as e:  # first: a DataError is a ValueError too
            raise gr.Error(str(e)) from None
        except (TypeError, ValueError) as e:
            raise gr.Error(f"check the form: {e}") from None
        img = lambda t: (t.permute(1, 2, 0).clamp(0, 1).numpy() * 255).astype(np.uint8)  # noqa: E731
        lowimg = img(rec.lowlevel[0]) if rec.lowlevel is not None else None
        picked = img(rec.picked[0])
        thumbs = engine.data.images(ids)
        gallery = [(im, f"image {i} · {s:.2f}") for im, i, s in zip(thumbs, ids, scores)]
        text = (f"**{resp.caption}** · noise ×{resp.noise:.2f} · MindEye drew 4 samples and kept the one whose "
                f"CLIP features best match its prediction")
        return resp.image, lowimg, picked, text, view_json, gallery, resp

    def redraw(resp, v):
        if resp is None or not engine.has_surface:
            return gr.skip()
        return brain.update(engine, engine.scene_view(resp, v))

    draw_bg.change(canvas_for, draw_bg, sketch, api_name=False)
    source.change(lambda s: tuple(gr.Group(visible=s == name) for name in SOURCES), source,
                  [compose_box, draw_box, upload_box], api_name=False)
    go.click(run, [source, upload, sketch, background, *rows, noise, seed, view], [seen, low, pick, caption, view_box, nearest, last],
             api_name="your_image", concurrency_limit=1, concurrency_id="reconstruct")
    view.change(redraw, [last, view], view_box, api_name=False)
