"""Retrieve tab: which images does a brain response point to? Top-k of the test set by CLIP similarity to
the brain-predicted embedding (image retrieval), or, for an image, the trials whose brains point at it; or,
as MindEye's LAION-5B step, the top-k of a large pool (a pool folder built with `python -m mindeye index
build`, a clip-retrieval index folder, or a clip-retrieval server URL) with the second-order pick marked."""
from __future__ import annotations

import gradio as gr

from mindeye.bundle import PROJECT_ROOT
from mindeye.data.errors import DataError
from mindeye.engine import Engine

from . import IMAGE_BUTTONS

TEST_SET = "test set"
HELP = ("**What am I looking at?** MindEye turned the brain response into a point in CLIP space and looked up "
        "the nearest of the {n} test images. Chance of the right one coming first is 1 in {n}. *Brain "
        "retrieval* turns it around: for the image, which of the {n} brain responses points closest to it? "
        "Pick a **large pool** instead of the test set for MindEye's LAION-5B step: the seen image is not in "
        "it, so look for images *like* it; ★ marks the second-order pick. Build a pool with "
        "`python -m mindeye index build --scenes 100000 --out data/pool`, or type a clip-retrieval server URL.")


def pool_choices(engine: Engine) -> list[str]:
    """The test set, the bundle's pool if it names one, and every pool folder found under data/."""
    from mindeye.pipelines.pool_folders import find_pools
    out = [TEST_SET]
    if engine.bundle.pool:
        out.append(str(engine.bundle.pool))
    for p in find_pools(PROJECT_ROOT / "data"):
        rel = str(p.relative_to(PROJECT_ROOT)) if p.is_relative_to(PROJECT_ROOT) else str(p)
        if rel not in out:
            out.append(rel)
    return out


def _pool_spec(choice: str) -> str:
    choice = (choice or "").strip()
    if choice.startswith(("http://", "https://")):
        return choice
    from pathlib import Path
    p = Path(choice)
    return str(p if p.is_absolute() else PROJECT_ROOT / p)


def build(engine: Engine):
    n = engine.n_test
    gr.Markdown(HELP.format(n=n))
    with gr.Row():
        index = gr.Slider(0, n - 1, value=0, step=1, label=f"test trial (0-{n - 1})", scale=3)
        k = gr.Slider(1, 32, value=8, step=1, label="top k")
        target = gr.Radio(["final", "hidden"], value="final", label="CLIP space")
        mode = gr.Radio(["image retrieval", "brain retrieval"], value="image retrieval", label="direction")
        pool = gr.Dropdown(pool_choices(engine), value=TEST_SET, allow_custom_value=True, scale=2,
                           label="search in", info="the test set, a pool folder, or a clip-retrieval URL")
    go = gr.Button("retrieve", variant="primary")
    with gr.Row():
        seen = gr.Image(buttons=IMAGE_BUTTONS, label="seen image", type="numpy", interactive=False, height=200, elem_classes="stimulus", scale=1)
        gallery = gr.Gallery(buttons=IMAGE_BUTTONS, label="nearest first", columns=8, height=260, scale=4)
    summary = gr.Markdown()

    def run_pool(i, kk, md, choice):
        if md != "image retrieval":
            raise DataError("brain retrieval searches the test set's brain responses; pick 'test set' for it")
        res = engine.pool_retrieve([i], _pool_spec(choice), k=kk)
        keys, scores, second, best = res.keys[0], res.scores[0], res.second_order[0], int(res.best[0])
        items = [(im, ("★ " if j == best else "") + f"{s:.3f}" + ("" if second[j] != second[j] else f" · 2nd {second[j]:.3f}")
                  + (f" · {cap}" if cap else ""))
                 for j, (im, s, cap) in enumerate(zip(res.images[0], scores, res.captions[0]))]
        pick = "; ★ is the second-order pick (its CLIP hidden tokens are nearest the hidden model's brain prediction)"
        text = (f"Top {len(keys)} of **{res.source}** by the final-layer brain embedding (pools hold final-layer "
                f"embeddings, whatever the CLIP space above){pick if second[best] == second[best] else ''}. "
                "The seen image is not in the pool: judge the content, not the exact picture.")
        return items, text

    def run(i, kk, tgt, md, choice=TEST_SET):
        try:
            i, kk = int(i), int(kk)
            t = engine.test_trial(i)
            if choice and choice != TEST_SET:
                items, text = run_pool(i, kk, md, choice)
            elif md == "image retrieval":
                ids, scores, rank = engine.retrieve(i, kk, tgt)
                items = [(engine.data.images([int(x)])[0], ("✔ " if int(x) == t.image_id else "") + f"{s:.3f}")
                         for x, s in zip(ids, scores)]
                text = f"The seen image ranks **{rank}** of {n} (1 = retrieved first)."
            else:
                trials, scores, rank = engine.brain_retrieve(i, kk, tgt)
                items = [(engine.test_trial(int(x)).image, ("✔ " if int(x) == i else "") + f"trial {int(x)} · {s:.3f}")
                         for x, s in zip(trials, scores)]
                text = f"This image's own brain response ranks **{rank}** of {n}. Shown: the images those trials saw."
        except (TypeError, ValueError) as e:
            if isinstance(e, DataError):
                raise gr.Error(str(e)) from None
            raise gr.Error("trial and k must be whole numbers") from None
        return t.image, items, text

    go.click(run, [index, k, target, mode, pool], [seen, gallery, summary], api_name="retrieve", concurrency_limit=2,
             concurrency_id="retrieve")
    return index
