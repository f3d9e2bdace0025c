"""Evaluate tab: how good is the decoding, in numbers? The paper's metrics over a chosen number of test trials
for MindEye, the ridge baseline and the true-token ceiling, 300-way retrieval over the whole test set, a
per-trial table, CSV downloads, and the published numbers (real NSD) in their own block."""
from __future__ import annotations

import gradio as gr
import pandas as pd

from mindeye.data.errors import DataError
from mindeye.engine import EVAL_NAMES, Engine
from mindeye.evaluation import format_table, paper_table
from mindeye.pipelines.settings import MAX_SAMPLES, V1_STEPS

HELP = ("**What am I looking at?** Each method drew a picture from every chosen test trial's brain response, "
        "and the picture was scored against the image the subject actually saw: PixCorr and SSIM compare pixels "
        "and structure (1 = identical), CLIP 2-way asks how often the drawing is closer to its own image than to "
        "another one (50% = chance), the judge checks the scene's shapes and colours. *True tokens* draws from the "
        "seen image's own CLIP features, the best any brain decoder could do with this drawing model; *ridge* is "
        "the classic linear decoder. Retrieval asks whether the brain's prediction picks out the right image among "
        "300 (chance 1 in 300).")

PAPER_NOTE = ("**Published numbers (MindEye paper, real NSD data)** · for reference only: *not comparable* with "
              "the SimNSD numbers above. Those are real fMRI of natural photographs scored at 425 px with feature "
              "nets (AlexNet, Inception, CLIP ViT-L/14, EffNet, SwAV) that this project does not ship; SimNSD is a "
              "simulated brain looking at simple synthetic scenes. ↓: lower is better.")

SOURCE_BY_NAME = {v: k for k, v in EVAL_NAMES.items()}


def _retrieval_table(ev) -> str:
    chance = 1 / ev.n_way
    head = ("| model | image retrieval | (95% of draws) | brain retrieval | (95% of draws) | chance |\n"
            "|---|---|---|---|---|---|")
    rows = []
    for name, r in ev.retrieval.items():
        i, b = r["image"], r["brain"]
        rows.append(f"| {name} | **{100 * i['mean']:.1f}%** | {100 * i['ci95'][0]:.1f}-{100 * i['ci95'][1]:.1f}% "
                    f"| **{100 * b['mean']:.1f}%** | {100 * b['ci95'][0]:.1f}-{100 * b['ci95'][1]:.1f}% "
                    f"| {100 * chance:.2f}% |")
    if not rows:
        return "No MindEye model in this bundle: no retrieval to score."
    return "\n".join([head, *rows])


def _sorted(df: pd.DataFrame, by: str, worst_first: bool) -> pd.DataFrame:
    if df is None or not len(df):
        return df
    if by not in df.columns:
        by = "trial"
    # ranks: 1 is best; every other score: higher is better
    best_high = "rank" not in by and by not in ("trial", "image id")
    ascending = worst_first if best_high else not worst_first
    if by in ("trial", "image id"):
        ascending = True
    return df.sort_values(by, ascending=ascending, kind="stable").round(3)


def build(engine: Engine, reconstruct_index=None, tabs=None):
    n = engine.n_test
    gr.Markdown(HELP)
    with gr.Row():
        trials = gr.Slider(1, n, value=min(20, n), step=1, scale=3,
                           label=f"number of test trials to reconstruct (trials 0..N-1 of {n}; ~3 s per trial and "
                                 "method on a laptop CPU)")
        sources = gr.CheckboxGroup(list(SOURCE_BY_NAME), value=list(SOURCE_BY_NAME), scale=3,
                                   label="methods (ridge's first use fits it: a few minutes on a laptop, then cached)")
    with gr.Accordion("sampling", open=False):
        with gr.Row():
            strength = gr.Slider(0, 1, value=engine.default_strength()[0], step=0.05,
                                 label="img2img strength (true tokens always use 1)",
                                 info="starts at the value chosen on val")
            samples = gr.Slider(1, MAX_SAMPLES, value=1, step=1, label="samples per trial (>1: second-order pick)")
            steps = gr.Slider(2, 50, value=V1_STEPS, step=1, label="denoising steps")
            seed = gr.Number(value=0, precision=0, label="seed")
    go = gr.Button("evaluate", variant="primary")
    coverage = gr.Markdown()
    summary = gr.Markdown()
    retrieval = gr.Markdown()
    files = gr.File(label="CSV downloads (summary, per trial)", file_count="multiple", interactive=False)
    gr.Markdown("**Per trial** · click a column header or pick a score to sort by; click a row to open that trial "
                "in the Reconstruct tab." if reconstruct_index is not None else "**Per trial** · pick a score to sort by.")
    with gr.Row():
        sort_by = gr.Dropdown(["trial"], value="trial", label="sort by", scale=3, allow_custom_value=True)
        worst = gr.Checkbox(value=False, label="worst first", scale=1)
    table = gr.Dataframe(interactive=False, wrap=False, max_height=420, label="scores of each reconstructed trial")
    picked = gr.Markdown()
    state = gr.State()
    with gr.Accordion("published numbers (real NSD, not comparable with SimNSD)", open=True):
        gr.Markdown(PAPER_NOTE + "\n\n" + paper_table())

    def run(k, names, s, ns, st, sd, by, wf, progress=gr.Progress()):
        if not names:
            raise gr.Error("choose at least one method")
        try:
            k, ns, st, sd = int(k), int(ns), int(st), int(sd if sd is not None else 0)
            ev = engine.evaluate(k, [SOURCE_BY_NAME[x] for x in names], strength=float(s), samples=ns, steps=st,
                                 seed=sd, progress=lambda f, msg: progress(f, desc=msg))
        except (TypeError, ValueError, KeyError):
            raise gr.Error("trials, samples, steps and seed must be whole numbers; methods from the list") from None
        except DataError as e:
            raise gr.Error(str(e)) from None
        st_ = ev.settings
        cover = (f"### These reconstruction numbers cover **{len(ev.trials)} of {ev.n_test}** test trials "
                 f"(trials 0-{len(ev.trials) - 1})\n{st_['samples']} sample(s) per trial, {st_['steps']} steps, "
                 f"guidance {st_['guidance']:g}, img2img strength {st_['strength']:g} (true tokens: 1), seed "
                 f"{st_['seed']}. Retrieval below uses all {ev.n_test} test trials. “not available”: the paper's "
                 "feature nets need their weights, which are not installed; no number is made up from random weights.")
        header, rows = ev.per_trial_rows()
        df = pd.DataFrame(rows, columns=header)
        choices = [c for c in header if c != "caption"]
        by = by if by in choices else "trial"
        return (cover, format_table(ev.columns),
                f"**300-way retrieval** (top-1, mean of 30 random draws of {ev.n_way} trials; chance "
                f"1/{ev.n_way} = {100 / ev.n_way:.2f}%)\n\n" + _retrieval_table(ev),
                [str(ev.csv), str(ev.per_trial_csv)], gr.update(choices=choices, value=by), _sorted(df, by, wf), df)

    go.click(run, [trials, sources, strength, samples, steps, seed, sort_by, worst],
             [coverage, summary, retrieval, files, sort_by, table, state], api_name="evaluate", concurrency_limit=1,
             concurrency_id="evaluate")
    for c in (sort_by, worst):
        c.change(_sorted, [state, sort_by, worst], table, api_name=False)

    if reconstruct_index is not None:
        def pick(evt: gr.SelectData):
            row = evt.row_value or []
            try:
                i = int(row[0])
            except (IndexError, TypeError, ValueError):
                return gr.update(), "", gr.skip()
            return (i, f"Trial **{i}** is set in the Reconstruct tab: press *reconstruct* there.",
                    gr.Tabs(selected="reconstruct") if tabs is not None else gr.skip())
        table.select(pick, None, [reconstruct_index, picked, tabs if tabs is not None else gr.State()],
                     api_name=False)
