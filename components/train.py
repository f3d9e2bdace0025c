"""Train tab: start MindEye training runs in the background, watch their curves live, cancel them, and serve
a finished one in the other tabs. Runs live on disk (``engine.runs``), so a reload re-attaches to them."""
from __future__ import annotations

import json

import gradio as gr
import plotly.graph_objects as go

from mindeye.data.errors import DataError
from mindeye.engine import Engine

from . import PLOTLY_HEAD, PLOTLY_JS, serve_file

HELP = ("**What am I looking at?** Here you train your own MindEye: a network learns to turn a brain response "
        "into CLIP's description of the image the subject saw. The *loss* should fall as it learns; *retrieval* "
        "asks, for 300 images it never trained on, how often the brain response picks the right one first "
        "(chance: 1 in 300). Val images choose the best checkpoint and test images only report it, so the test "
        "score stays fair.")
PRESETS = ["demo", "none"]  # none: the paper's full-size defaults (hours on a GPU)
REFRESH_S = 1.5
# keep the log scrolled to its newest line when new lines arrive (a gr.Textbox only autoscrolls when streamed)
SCROLL_LOG = """() => { const t = document.querySelector('#train-log textarea');
  if (t && t.dataset.len !== String(t.value.length)) { t.dataset.len = t.value.length; t.scrollTop = t.scrollHeight; } }"""
TABLE_HEADERS = ["run", "status", "epochs", "best val top-1", "started"]
# draw the figure JSON held in the component's value into the same div with Plotly.react on every change: with
# the figure's uirevision unchanged, the user's zoom and hidden traces survive the refresh. (gr.Plot remounts its
# chart on every new value, which resets them.) The page's window.Plotly is kept once found: gradio's own
# plots load another copy later.
LIVE_PLOT_JS = """
const box = element.querySelector('.live-plot');
const draw = () => {
  const P = window.__livePlotly || (window.__livePlotly = window.Plotly);
  if (!P) { setTimeout(draw, 200); return; }
  if (!props.value) { P.purge(box); return; }
  const fig = JSON.parse(props.value);
  P.react(box, fig.data, fig.layout, {responsive: true, displaylogo: false});
};
draw();
watch('value', draw);
"""


def _layout(fig: go.Figure, title: str, ytitle: str, xtitle: str, revision: str) -> go.Figure:
    # uirevision: a figure refreshed with the same revision keeps the user's zoom and hidden traces
    fig.update_layout(title=dict(text=title, font_size=14), height=260, margin=dict(l=50, r=10, t=40, b=40),
                      xaxis_title=xtitle, yaxis_title=ytitle, uirevision=revision, template="plotly_white",
                      legend=dict(orientation="h", y=-0.25), showlegend=True)
    return fig


def _waiting(fig: go.Figure, text: str) -> None:
    """An empty chart says what it waits for instead of showing bare axes."""
    fig.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font_color="grey")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)


def curves(rows: list[dict], revision: str = "") -> tuple[str, str, str]:
    """Training loss and learning rate per logged step, and 300-way retrieval per epoch, from metrics rows, as
    plotly figure JSON; ``revision`` (the run's name) is their uirevision: a new run resets the zoom."""
    steps = [r for r in rows if "loss" in r and "step" in r]
    epochs = [r for r in rows if "val_fwd_top1" in r and "epoch" in r]
    x = [r["step"] for r in steps]
    loss = go.Figure()
    loss.add_scatter(x=x, y=[r["loss"] for r in steps], name="total", mode="lines")
    if any(r.get("loss_prior") for r in steps):
        loss.add_scatter(x=x, y=[r.get("loss_nce") for r in steps], name="contrastive", mode="lines")
        loss.add_scatter(x=x, y=[r.get("loss_prior") for r in steps], name="diffusion prior", mode="lines")
    lr = go.Figure()
    lr.add_scatter(x=x, y=[r.get("lr") for r in steps], name="learning rate", mode="lines")
    acc = go.Figure()
    e = [r["epoch"] + 1 for r in epochs]
    for split, dash in (("val", "solid"), ("test", "dot")):
        if epochs and f"{split}_fwd_top1" in epochs[0]:
            acc.add_scatter(x=e, y=[(r[f"{split}_fwd_top1"] + r[f"{split}_bwd_top1"]) / 2 for r in epochs],
                            mode="lines+markers", name=f"{split} (image + brain retrieval)", line_dash=dash,
                            customdata=[[r[f"{split}_fwd_top1"], r[f"{split}_bwd_top1"]] for r in epochs],
                            hovertemplate="epoch %{x}: %{y:.1%} (image %{customdata[0]:.1%}, brain %{customdata[1]:.1%})")
    if epochs:
        acc.add_hline(y=1 / 300, line_dash="dash", line_color="grey", annotation_text="chance (1 in 300)",
                      annotation_position="top left")
        acc.update_yaxes(tickformat=".0%", rangemode="tozero")
    else:
        _waiting(acc, "scored after each epoch")
    if not steps:
        _waiting(loss, "waiting for the first training steps")
        _waiting(lr, "waiting for the first training steps")
    return tuple(f.to_json() for f in (_layout(loss, "training loss", "loss", "step", revision),
                                       _layout(lr, "learning rate (one-cycle schedule)", "lr", "step", revision),
                                       _layout(acc, "300-way retrieval, top-1", "top-1", "epoch", revision)))


def readable(line: str) -> str:
    """An epoch record (the JSON line the trainer prints after each epoch) as one short line; others as they are."""
    if not (line.startswith("{") and '"val_fwd_top1"' in line):
        return line
    try:
        r = json.loads(line)
        return (f"epoch {r['epoch'] + 1}: val loss {r['val_loss']:.3f} · top-1 val {r['val_fwd_top1']:.1%} image / "
                f"{r['val_bwd_top1']:.1%} brain · test {r['test_fwd_top1']:.1%} / {r['test_bwd_top1']:.1%} · "
                f"{r['epoch_seconds']:.1f} s")
    except (ValueError, KeyError, TypeError):
        return line


def live_plot(height: int = 260) -> gr.HTML:
    """A plotly chart whose value is a figure as JSON (``fig.to_json()``), redrawn in place (keeps the zoom)."""
    serve_file(PLOTLY_JS)
    return gr.HTML(None, html_template=f"<div class='live-plot' style='height:{height}px'></div>",
                   js_on_load=LIVE_PLOT_JS, head=PLOTLY_HEAD,
                   padding=False, container=True, min_height=height)


def _table(listing) -> list[list]:
    return [[r.name, r.status, f"{r.epochs_done}/{r.epochs_planned or '?'}",
             f"{r.best_val_top1:.1%}" if r.best_val_top1 is not None else "", r.started] for r in listing]


def default_run(listing) -> str | None:
    """The run a freshly loaded page shows: the newest running one, else the newest (``listing`` is newest
    first), else none."""
    return next((r.name for r in listing if r.status == "running"), listing[0].name if listing else None)


def build(engine: Engine):
    runs = engine.runs
    subjects = runs.subjects() or [engine.bundle.subject]
    first = runs.preset_values("demo")
    gr.Markdown(HELP)
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            preset = gr.Dropdown(PRESETS, value="demo", label="preset (fills the form below)")
            name = gr.Textbox(runs.free_name(first["model_name"]), label="run name (letters, digits, _ and -)")
            subject = gr.Dropdown([(f"subject {s}", s) for s in subjects], value=engine.bundle.subject,
                                  label="subject", info="the other tabs show subject "
                                  f"{engine.bundle.subject}: only its runs can be used there")
            with gr.Row():
                epochs = gr.Number(first["num_epochs"], precision=0, minimum=1, label="epochs")
                batch = gr.Number(first["batch_size"], precision=0, minimum=2, label="batch size")
            with gr.Row():
                max_lr = gr.Number(first["max_lr"], minimum=0, label="max learning rate")
                mixup = gr.Slider(0, 1, first["mixup_pct"], step=0.01, label="mixup_pct",
                                  info="share of epochs trained with BiMixCo before SoftCLIP")
            with gr.Row():
                hidden = gr.Checkbox(first["hidden"], label="hidden",
                                     info="predict CLIP's hidden tokens (for reconstruction), not its final embedding")
                prior = gr.Checkbox(first["prior"], label="prior", info="also train the diffusion prior")
            extra = gr.Textbox("", label="more flags, as on the command line (optional)",
                               placeholder="--hidden_dim 256 --n_blocks 2")
            with gr.Row():
                start = gr.Button("Start", variant="primary")
                cancel = gr.Button("Cancel", variant="stop")
                use = gr.Button("Use this run")
            message = gr.Markdown()
        with gr.Column(scale=3):
            # the value is set when the page loads (the newest running run, else the newest run), by Start, and
            # by the user; never by the refresh ticks: a tick that read the old value could land after Start and
            # put the view (and Cancel) back on another run
            run = gr.Dropdown([], value=lambda: default_run(runs.list()), allow_custom_value=True,
                              label="run shown below")
            table = gr.Dataframe(headers=TABLE_HEADERS, interactive=False, label="runs (click a row to show it)",
                                 max_height=220)
            with gr.Row():
                loss_plot = live_plot()
                lr_plot = live_plot()
            acc_plot = live_plot()
            log = gr.Textbox(label="log (last lines)", lines=6, max_lines=14, interactive=False, elem_id="train-log")
            with gr.Accordion("run status (raw)", open=False):
                details = gr.JSON()
    shown = gr.State(None)  # the run names the dropdown was last sent, so ticks resend only changes
    timer = gr.Timer(REFRESH_S, active=False)  # the app turns it on only while the Train tab is open

    def fill(p):
        v = runs.preset_values(None if p == "none" else p)
        return (runs.free_name(v["model_name"]), v["num_epochs"], v["batch_size"], v["max_lr"], v["mixup_pct"],
                v["hidden"], v["prior"])

    def start_run(p, nm, subj, ep, bs, lr, mx, hid, pri, ex):
        try:
            flags = dict(subj=int(subj), num_epochs=int(ep), batch_size=int(bs), max_lr=float(lr),
                         mixup_pct=float(mx), hidden=bool(hid), prior=bool(pri))
        except (TypeError, ValueError):
            raise gr.Error("subject, epochs and batch size must be whole numbers, the learning rate a number") from None
        try:
            st = runs.start((nm or "").strip(), flags, extra=ex or "", preset=None if p == "none" else p)
        except DataError as e:
            raise gr.Error(str(e)) from None
        return st.name, f"started **{st.name}**: {st.epochs_planned} epochs on subject {st.subject}"

    def status(selected, last_names):
        listing = runs.list()
        names = [r.name for r in listing]
        # only the choices are ever sent, never the value (see the dropdown above)
        dd = gr.skip() if last_names == names else gr.Dropdown(choices=names)
        if selected not in names:  # none yet (the runs folder was empty when the page loaded), or gone
            empty = curves([], "")
            return dd, names, _table(listing), {}, *empty, ""
        st = next(r for r in listing if r.name == selected)
        log_text = "\n".join(map(readable, runs.log_tail(selected, 14).splitlines()))
        return dd, names, _table(listing), st.as_dict(), *curves(runs.metrics(selected), selected), log_text

    def cancel_run(selected):
        if not selected:
            raise gr.Error("no run is shown: start one, or pick one in the runs table")
        try:
            st = runs.cancel(selected)
        except DataError as e:
            raise gr.Error(str(e)) from None
        return (f"cancelled **{st.name}** after {st.epochs_done} epochs; its checkpoints stay usable",
                st.as_dict())

    def use_run(selected):
        if not selected:
            raise gr.Error("no run is shown: pick a finished (or cancelled) run in the runs table")
        try:
            return engine.use_run(selected)
        except DataError as e:
            raise gr.Error(str(e)) from None

    def pick(evt: gr.SelectData, data):
        return data.iloc[evt.index[0], 0] if evt.index is not None and len(data) else gr.skip()

    form = [name, epochs, batch, max_lr, mixup, hidden, prior]
    watched = [run, shown, table, details, loss_plot, lr_plot, acc_plot, log]
    preset.change(fill, preset, form, api_name=False)
    start.click(start_run, [preset, name, subject, epochs, batch, max_lr, mixup, hidden, prior, extra],
                [run, message], api_name="train_start").then(status, [run, shown], watched, api_name=False)
    timer.tick(status, [run, shown], watched, api_name="train_status", concurrency_limit=4,
               concurrency_id="train_status").then(None, js=SCROLL_LOG)
    run.input(status, [run, shown], watched, api_name=False)
    table.select(pick, table, run, api_name=False).then(status, [run, shown], watched, api_name=False)
    cancel.click(cancel_run, run, [message, details], api_name="train_cancel")
    use.click(use_run, run, message, api_name="train_use")
    return timer
