"""Reconstruct tab: what did the brain "see"? MindEye's samples for one test trial, the second-order pick,
the low-level picture img2img starts from, the ridge baseline through the same decoder, and scores."""
from __future__ import annotations

import time

import gradio as gr
import numpy as np

from mindeye.data import scenes
from mindeye.engine import Engine, Source
from mindeye.pipelines.settings import MAX_SAMPLES, V1_GUIDANCE, V1_STEPS

from . import IMAGE_BUTTONS

HELP = ("**What am I looking at?** The model read only the brain response to the image on the left. From it, "
        "MindEye predicted CLIP features and drew several guesses; the one whose features best match the "
        "prediction is starred. *img2img strength* 1 draws from scratch; lower values start from the blurry "
        "low-level picture, keeping its layout and colours. Ridge is the classic linear decoder, drawn the same way "
        "(tick *also decode with ridge* under *sampling*). "
        "(On the demo, the low-level picture is the most faithful part, so the validation images chose a low "
        "strength. Slide towards 1 to see what MindEye's CLIP tokens draw on their own: the object's colour and "
        "rough place, with rounded shapes and lost small objects; see the README.)")


def _img(t):
    return (t.permute(1, 2, 0).clamp(0, 1).numpy() * 255).astype(np.uint8)


def _scores(engine: Engine, index: int, picked) -> str:
    from mindeye.engine import Model
    from mindeye.metrics import pixcorr, ssim
    import torch
    from mindeye.data.stream import to_model_input
    t = engine.test_trial(index)
    orig = to_model_input(t.image[None], t.image.shape[0])
    rows = [f"PixCorr {pixcorr(picked[None], orig):.3f} · SSIM {ssim(picked[None], orig):.3f}"]
    clip = engine.model(Model.CLIP)
    with torch.no_grad():
        sim = torch.nn.functional.cosine_similarity(clip.final(picked[None]), clip.final(orig)).item()
    rows.append(f"CLIP similarity to the seen image {sim:.3f}")
    if "judge" in engine.bundle.models and "shape" in t.labels:
        p = engine.model(Model.JUDGE).predict(picked[None])
        lab = t.labels
        def name(seq, i):
            return seq[i] if i >= 0 else "none"
        rows.append("| | seen | reconstructed |\n|---|---|---|\n"
                    f"| largest object | {name(scenes.COLOUR_NAMES, lab['colour'][0])} {name(scenes.SHAPES, lab['shape'][0])} "
                    f"| {name(scenes.COLOUR_NAMES, p['colour'][0, 0])} {name(scenes.SHAPES, p['shape'][0, 0])} |\n"
                    f"| objects | {int(lab['n_objects'])} | {int(p['n_objects'][0])} |\n"
                    f"| background | {scenes.BACKGROUNDS[int(lab['background'])]} | {scenes.BACKGROUNDS[int(p['background'][0])]} |")
    return "\n\n".join(rows)


class _Cancelled(Exception):
    pass


class CancelBox:
    """Cancel requests per browser session. A run notes when it started; a cancel after that stops it at its
    next denoising step (the worker thread stops, not only the page's wait), one before it is ignored."""

    def __init__(self):
        self._at: dict[str, float] = {}

    def cancel(self, session: str) -> None:
        self._at[session] = time.monotonic()

    def steps(self, session: str, started: float, progress_tqdm):
        """Wrap the decoder's step iterator: progress as before, and a stop when this session cancels."""
        def wrap(it):
            for x in progress_tqdm(it):
                if self._at.get(session, -1.0) > started:
                    raise _Cancelled
                yield x
        return wrap


def build(engine: Engine):
    n = engine.n_test
    gr.Markdown(HELP)
    with gr.Row():
        index = gr.Slider(0, n - 1, value=0, step=1, label=f"test image (0-{n - 1})", scale=3)
        strength = gr.Slider(0, 1, value=engine.default_strength()[0], step=0.05, label="img2img strength (1 = none)",
                             info="starts at the value chosen on val")
        samples = gr.Slider(1, MAX_SAMPLES, value=4, step=1, label="samples")
    with gr.Accordion("sampling", open=False):
        with gr.Row():
            steps = gr.Slider(5, 50, value=V1_STEPS, step=1, label="denoising steps")
            guidance = gr.Slider(1, 10, value=V1_GUIDANCE, step=0.5, label="guidance scale")
            seed = gr.Number(value=0, precision=0, label="seed")
            with_ridge = gr.Checkbox(value=False, label="also decode with ridge (its first use fits it: a few "
                                     "minutes on a laptop, then cached)")
    with gr.Row():
        go = gr.Button("reconstruct", variant="primary", scale=4)
        stop = gr.Button("cancel", variant="stop", scale=1)
    with gr.Row():
        seen = gr.Image(buttons=IMAGE_BUTTONS, label="seen image", type="numpy", interactive=False, height=200, elem_classes="stimulus")
        low = gr.Image(buttons=IMAGE_BUTTONS, label="low-level picture (img2img start)", type="numpy", interactive=False, height=200,
                       elem_classes="stimulus")
        pick = gr.Image(buttons=IMAGE_BUTTONS, label="MindEye (★ pick)", type="numpy", interactive=False, height=200, elem_classes="stimulus")
        ridge = gr.Image(buttons=IMAGE_BUTTONS, label="ridge (same decoder)", type="numpy", interactive=False, height=200,
                         elem_classes="stimulus", visible=False)  # shown while "also decode with ridge" is ticked
    gallery = gr.Gallery(buttons=IMAGE_BUTTONS, label="all MindEye samples", columns=8, height="auto", object_fit="contain")
    scores = gr.Markdown()

    box = CancelBox()

    def run(i, s, k, st, g, sd, rdg, request: gr.Request, progress=gr.Progress(track_tqdm=False)):
        from mindeye.data.errors import DataError
        session, started = getattr(request, "session_hash", None) or "?", time.monotonic()
        steps_of = box.steps(session, started, lambda it: progress.tqdm(it, desc="denoising"))
        try:
            i, k, st, sd = int(i), int(k), int(st), int(sd if sd is not None else 0)
        except (TypeError, ValueError):
            raise gr.Error("trial, samples, steps and seed must be whole numbers") from None
        try:
            t = engine.test_trial(i)
            progress(0, desc="drawing MindEye's samples")
            r = engine.reconstruct([i], Source.MINDEYE, strength=float(s), n=k, steps=st, guidance=float(g), seed=sd,
                                   progress=steps_of)
            rimg = None
            if rdg:
                progress(0, desc="drawing ridge's reconstruction")
                rimg = _img(engine.reconstruct([i], Source.RIDGE, strength=float(s), n=1, steps=st, guidance=float(g),
                                               seed=sd, progress=steps_of).picked[0])
        except DataError as e:
            raise gr.Error(str(e)) from None
        except _Cancelled:
            gr.Info("reconstruction cancelled")
            return (gr.skip(),) * 6
        best = int(r.best[0])
        gal = [(_img(x), ("★ pick · " if j == best else "") + f"match {r.selection_scores[0, j]:.3f}")
               for j, x in enumerate(r.samples[0])]
        lowimg = _img(r.lowlevel[0]) if r.lowlevel is not None else None
        return t.image, lowimg, _img(r.picked[0]), rimg, gal, _scores(engine, i, r.picked[0])

    with_ridge.change(lambda on: gr.Image(visible=bool(on)), with_ridge, ridge, api_name=False)
    go.click(run, [index, strength, samples, steps, guidance, seed, with_ridge],
             [seen, low, pick, ridge, gallery, scores], api_name="reconstruct", concurrency_limit=1,
             concurrency_id="reconstruct")  # one diffusion run at a time, shared with the Your image tab

    def cancel(request: gr.Request):
        box.cancel(getattr(request, "session_hash", None) or "?")

    # not queued behind the run it cancels; the run stops at its next denoising step and frees the queue slot
    stop.click(cancel, None, None, api_name="reconstruct_cancel", queue=False)
    return index
