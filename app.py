"""MindEye Explorer: a browser app around a resident MindEye engine.

    python app.py                      # the demo bundle (SimNSD subject 1), on http://127.0.0.1:7860
    python app.py --bundle PATH        # another bundle (a folder with bundle.json)
"""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gradio as gr  # noqa: E402

from components import evaluate, reconstruct, retrieve, train, trials, umap  # noqa: E402
from mindeye.bundle import DEMO_BUNDLE, Bundle  # noqa: E402
from mindeye.engine import Engine  # noqa: E402


# small stimuli are shown scaled up to fill their box
CSS = ".stimulus img { width: 100% !important; height: 100% !important; object-fit: contain; }"


def build_app(engine: Engine) -> gr.Blocks:
    with gr.Blocks(title="MindEye Explorer") as demo:
        gr.Markdown("# MindEye Explorer\nDecoding images from fMRI, after MindEye (Scotti et al., 2023).")
        gr.Markdown(engine.describe())
        with gr.Tab("Trials"):
            show_trial, show_map, map_inputs, trial_outputs, brain = trials.build(engine)
        models = engine.bundle.models
        recon_index = None
        if {"mindeye_hidden", "decoder", "clip"} <= set(models):
            with gr.Tab("Reconstruct"):
                recon_index = reconstruct.build(engine)
        if {"mindeye_final", "clip"} <= set(models):
            with gr.Tab("Retrieve"):
                retrieve.build(engine)
        if "clip" in models and ({"mindeye_final", "mindeye_hidden"} & set(models)):
            with gr.Tab("UMAP"):
                umap.build(engine)
        with gr.Tab("Train"):
            train.build(engine)
        if {"mindeye_hidden", "decoder", "clip"} <= set(models):
            with gr.Tab("Evaluate"):
                evaluate.build(engine, recon_index)
        demo.load(show_trial, map_inputs[0], trial_outputs, api_name=False)
        demo.load(show_map, map_inputs, brain, api_name=False)
    return demo


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="MindEye Explorer")
    p.add_argument("--bundle", default=str(DEMO_BUNDLE), help="bundle folder (default: assets/demo)")
    p.add_argument("--data", default=None, help="override the bundle's dataset folder")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=7860)
    args = p.parse_args(argv)
    from mindeye.data.errors import DataError
    try:
        # only the bundle's own SimNSD folder is ever simulated into; a --data folder must already hold a dataset
        engine = Engine(Bundle.load(args.bundle, args.data), simulate_if_missing=args.data is None)
    except DataError as e:
        raise SystemExit(f"error: {e}") from None
    build_app(engine).launch(server_name=args.host, server_port=args.port, show_error=True, css=CSS,
                             allowed_paths=[str(engine.evaluate_dir)])  # the Evaluate tab's CSV files


if __name__ == "__main__":
    main()
