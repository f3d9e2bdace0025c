"""Retrieve tab: which images does a brain response point to? Top-k of the test set by CLIP similarity to
the brain-predicted embedding (image retrieval), or, for an image, the trials whose brains point at it."""
from __future__ import annotations

import gradio as gr

from mindeye.data.errors import DataError
from mindeye.engine import Engine

HELP = ("**What am I looking at?** MindEye turned the brain response into a point in CLIP space and looked up "
        "the nearest of the 1000 test images. Chance of the right one coming first is 1 in 1000. *Brain "
        "retrieval* turns it around: for the image, which of the 1000 brain responses points closest to it?")


def build(engine: Engine):
    n = engine.n_test
    gr.Markdown(HELP)
    with gr.Row():
        index = gr.Slider(0, n - 1, value=0, step=1, label=f"test trial (0-{n - 1})", scale=3)
        k = gr.Slider(1, 32, value=8, step=1, label="top k")
        target = gr.Radio(["final", "hidden"], value="final", label="CLIP space")
        mode = gr.Radio(["image retrieval", "brain retrieval"], value="image retrieval", label="direction")
    go = gr.Button("retrieve", variant="primary")
    with gr.Row():
        seen = gr.Image(label="seen image", type="numpy", interactive=False, height=200, elem_classes="stimulus", scale=1)
        gallery = gr.Gallery(label="nearest first", columns=8, height=260, scale=4)
    summary = gr.Markdown()

    def run(i, kk, tgt, md):
        try:
            i, kk = int(i), int(kk)
            t = engine.test_trial(i)
            if md == "image retrieval":
                ids, scores, rank = engine.retrieve(i, kk, tgt)
                items = [(engine.data.images([int(x)])[0], ("✔ " if int(x) == t.image_id else "") + f"{s:.3f}")
                         for x, s in zip(ids, scores)]
                text = f"The seen image ranks **{rank}** of {n} (1 = retrieved first)."
            else:
                trials, scores, rank = engine.brain_retrieve(i, kk, tgt)
                items = [(engine.test_trial(int(x)).image, ("✔ " if int(x) == i else "") + f"trial {int(x)} · {s:.3f}")
                         for x, s in zip(trials, scores)]
                text = f"This image's own brain response ranks **{rank}** of {n}. Shown: the images those trials saw."
        except (TypeError, ValueError):
            raise gr.Error("trial and k must be whole numbers") from None
        except DataError as e:
            raise gr.Error(str(e)) from None
        return t.image, items, text

    go.click(run, [index, k, target, mode], [seen, gallery, summary], api_name="retrieve")
    return index
