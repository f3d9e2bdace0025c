"""MindEye Explorer: a browser app around a resident MindEye engine.

    python app.py                      # the demo bundle (SimNSD subject 1), on http://127.0.0.1:7860
    python app.py --bundle PATH        # another bundle (a folder with bundle.json)
    python app.py --port 8000 --auth teacher:secret
"""
from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


# small stimuli are shown scaled up to fill their box
CSS = (".stimulus img { width: 100% !important; height: 100% !important; object-fit: contain; }\n"
       ".switch-note p { font-size: 0.8em; color: #6b7280; margin: 0; }")
MAX_UPLOAD = "10mb"  # Your image's uploads; a bigger file is refused by the server with a message
# the address as the page opened, before tab and trial events rewrite it (read by the first load event)
HEAD = "<script>window.__initialSearch = window.location.search;</script>"


SWITCH_NOTE = ("Loading another bundle or subject restarts the app for everyone connected: about 10 s, or about a "
               "minute for a SimNSD subject simulated for the first time. A subject without its own MindEye models "
               "shows the tabs that need none (Trials, Train).")
# after a switch: wait for the restarted server, then reload the page (same address: trial and tab are kept)
RELOAD_JS = """async () => {
  await new Promise(r => setTimeout(r, 2000));
  for (let i = 0; i < 300; i++) {
    try { const r = await fetch(window.location.pathname, {cache: "no-store"}); if (r.ok) { location.reload(); return; } }
    catch (e) {}
    await new Promise(r => setTimeout(r, 1000));
  }
}"""


def build_app(engine, switch=None):
    """The Gradio Blocks of every tab around ``engine`` (gradio is imported here, so ``--help`` stays fast).

    ``switch(bundle_folder, subject)``: restarts the app on another bundle or subject (the command line passes
    one that re-executes it); None leaves the header's picker answering that switching is off."""
    import gradio as gr

    from mindeye.bundle import Bundle, find_bundles

    from components import atomic_image_cache, evaluate, reconstruct, retrieve, train, trials, umap, your_image
    atomic_image_cache()
    models = set(engine.bundle.models)
    can_reconstruct = {"mindeye_hidden", "decoder", "clip"} <= models
    with gr.Blocks(title="MindEye Explorer") as demo:
        gr.Markdown("# MindEye Explorer\nDecoding images from fMRI, after MindEye (Scotti et al., 2023).")
        offered = find_bundles([engine.bundle.folder] if engine.bundle.folder else None)
        current = str(engine.bundle.folder.resolve()) if engine.bundle.folder else None
        with gr.Row(equal_height=True):
            with gr.Column(scale=5):
                gr.Markdown("loaded: " + engine.describe())
            pick_bundle = gr.Dropdown([(_bundle_label(b), str(b)) for b in offered], value=current, label="bundle",
                                      scale=3, min_width=170)
            pick_subject = gr.Dropdown([(f"subject {s}", s) for s in engine.bundle.subjects()],
                                       value=engine.bundle.subject, label="subject", scale=2, min_width=140)
            load_btn = gr.Button("load", scale=1, min_width=80, size="sm")
        switch_note = gr.Markdown(visible=False)

        def subjects_of(folder):
            try:
                b = Bundle.load(folder)
            except Exception as e:  # noqa: BLE001 - a broken bundle.json: say so, keep the page
                raise gr.Error(str(e)) from None
            return gr.Dropdown(choices=[(f"subject {s}", s) for s in b.subjects()], value=b.subject)

        def do_switch(folder, subject):
            from mindeye.data.errors import DataError
            if str(folder) not in {str(b) for b in offered}:
                raise gr.Error(f"unknown bundle {folder!r}; expected one of the bundles offered in the list")
            try:
                target = Bundle.load(folder).for_subject(int(subject))
            except (DataError, TypeError, ValueError) as e:
                raise gr.Error(str(e)) from None
            if target.folder.resolve() == engine.bundle.folder.resolve() and target.subject == engine.bundle.subject:
                raise gr.Error("that bundle and subject are what is loaded now")
            if switch is None:
                raise gr.Error("switching is off in this server: start it with `python app.py --bundle ... --subject ...`")
            switch(target.folder.resolve(), target.subject)
            return gr.Markdown(f"**Restarting on {target.name}, subject {target.subject}** … the page reloads by "
                               f"itself when the app is back.", visible=True)

        pick_bundle.change(subjects_of, pick_bundle, pick_subject, api_name=False)
        load_btn.click(do_switch, [pick_bundle, pick_subject], switch_note, api_name="switch").success(
            None, None, None, js=RELOAD_JS, api_name=False)
        gr.Markdown(SWITCH_NOTE, elem_classes="switch-note")
        with gr.Tabs() as tabs:
            with gr.Tab("Trials", id="trials"):
                index, show_trial, show_map, map_inputs, trial_outputs, brain = trials.build(engine)
            recon_index = None
            if can_reconstruct:
                with gr.Tab("Reconstruct", id="reconstruct"):
                    recon_index = reconstruct.build(engine)
            if {"mindeye_final", "clip"} <= models:
                with gr.Tab("Retrieve", id="retrieve"):
                    retrieve.build(engine)
            if "clip" in models and ({"mindeye_final", "mindeye_hidden"} & models):
                with gr.Tab("UMAP", id="umap"):
                    umap.build(engine)
            with gr.Tab("Train", id="train"):
                train_timer = train.build(engine)
            if can_reconstruct:
                with gr.Tab("Evaluate", id="evaluate"):
                    evaluate.build(engine, recon_index, tabs)
            if can_reconstruct and "mindeye_final" in models and engine.is_simulated:
                with gr.Tab("Your image", id="your-image"):
                    your_image.build(engine)
        tab_ids = [t.id for t in tabs.children if isinstance(t, gr.Tab)]
        for t in tabs.children:
            if isinstance(t, gr.Tab):
                t.select(None, None, None, api_name=False, js=TAB_URL_JS % t.id)  # the open tab in the address
                # the Train tab's curves refresh only while it is open: 30 pages polling would crowd the queue
                t.select(lambda on=t.id == "train": gr.Timer(active=on), None, train_timer, api_name=False)

        def from_url(search: str):
            """Open the trial and tab the address names (?trial=12&tab=reconstruct); anything else is ignored."""
            from urllib.parse import parse_qs
            q = {k: v[-1] for k, v in parse_qs(str(search or "").lstrip("?")).items()}
            tab = q.get("tab") if q.get("tab") in tab_ids else "trials"
            return trials.clamp_trial(engine, q.get("trial", 0)), gr.Tabs(selected=tab), gr.Timer(active=tab == "train")

        address = gr.Textbox(visible=False)
        demo.load(from_url, address, [index, tabs, train_timer], api_name=False, js="() => window.__initialSearch ?? window.location.search").then(
            show_trial, index, trial_outputs, api_name=False).then(show_map, map_inputs, brain, api_name=False)
        demo.load(None, None, None, js=trials.KEYS_JS, api_name=False)
    return demo


def _bundle_label(folder) -> str:
    import json
    from pathlib import Path
    try:
        return json.loads((Path(folder) / "bundle.json").read_text()).get("name", Path(folder).name)
    except (OSError, ValueError):
        return Path(folder).name


def launch_options(engine) -> dict:
    """What every launch of the app passes to ``demo.launch`` (the command line and the tests alike)."""
    return dict(show_error=True, css=CSS, head=HEAD,
                allowed_paths=[str(engine.evaluate_dir)],  # the Evaluate tab's CSV files
                max_file_size=MAX_UPLOAD)  # Your image's uploads; the server refuses bigger ones


TAB_URL_JS = "() => { const u = new URL(window.location); u.searchParams.set('tab', '%s'); history.replaceState(null, '', u); }"


def port_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be served (one sentence), or None when it is free."""
    if not 1 <= port <= 65535:
        return f"--port must be between 1 and 65535, got {port}"
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        # as the server will: connections of a previous run lingering in TIME_WAIT do not make the port busy,
        # a server listening on it does
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            s.listen(1)
        except PermissionError:
            return f"port {port} needs administrator rights; pick one above 1023 with --port (make run PORT=8000)"
        except OSError as e:
            if e.errno in (98, 48):  # EADDRINUSE (Linux, macOS)
                return (f"port {port} on {host} is already in use (another MindEye Explorer?); pick another with "
                        f"--port {port + 1} (make run PORT={port + 1})")
            return f"cannot listen on {host}:{port}: {e.strerror}"
    return None


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="MindEye Explorer: look inside brain decoding, in a browser.")
    p.add_argument("--bundle", default=None, help="bundle folder (default: assets/demo)")
    p.add_argument("--data", default=None, help="override the bundle's dataset folder (never simulated into)")
    p.add_argument("--subject", type=int, default=None, choices=range(1, 9), metavar="1-8",
                   help="another subject of the bundle's dataset (default: the bundle's); its MindEye models are used "
                        "only if they were trained on it")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only; "
                                                        "0.0.0.0 shares it on your network)")
    p.add_argument("--port", type=int, default=7860, help="port to serve on (default: 7860)")
    p.add_argument("--auth", default=None, metavar="USER:PASS", help="ask for this user name and password")
    args = p.parse_args(argv)
    auth = None
    if args.auth is not None:
        user, sep, password = args.auth.partition(":")
        if not (sep and user and password):
            p.error(f"--auth should be USER:PASS, got {args.auth!r}")
        auth = (user, password)
    if args.data is not None and not os.path.isdir(args.data):
        p.exit(2, f"error: --data should be a folder holding a converted dataset (subjNN.hdf5 + images.hdf5), "
                  f"{args.data!r} is {'a file' if os.path.exists(args.data) else 'not there'}\n")
    problem = port_problem(args.host, args.port)
    if problem:
        p.exit(2, f"error: {problem}\n")
    from mindeye.bundle import DEMO_BUNDLE, Bundle
    from mindeye.data.errors import DataError
    from mindeye.engine import Engine
    try:
        # only the bundle's own SimNSD folder is ever simulated into; a --data folder must already hold a dataset
        bundle = Bundle.load(args.bundle or DEMO_BUNDLE, args.data).for_subject(args.subject)
        engine = Engine(bundle, simulate_if_missing=args.data is None)
    except DataError as e:
        p.exit(2, f"error: {e}\n")

    def restart(folder, subject):
        """Re-execute this app on ``folder`` and ``subject`` (same address, port and password), half a second
        after the answer has gone back to the page."""
        import sys
        import threading
        argv = [sys.executable, os.path.abspath(__file__), "--bundle", str(folder), "--subject", str(subject),
                "--host", args.host, "--port", str(args.port)]
        if args.auth:
            argv += ["--auth", args.auth]
        if args.data and Path(folder).resolve() == bundle.folder.resolve():
            argv += ["--data", args.data]  # the dataset override belongs to the bundle it was given with
        print(f"MindEye Explorer: restarting on {folder}, subject {subject}", flush=True)

        def execute():
            # the server's listening socket is inheritable (uvicorn makes it so); closed on exec, the port is free
            # for the new process
            for fd in range(3, 4096):
                try:
                    os.set_inheritable(fd, False)
                except OSError:
                    pass
            os.execv(sys.executable, argv)
        threading.Timer(0.5, execute).start()

    demo = build_app(engine, switch=restart)
    demo.launch(server_name=args.host, server_port=args.port, auth=auth, prevent_thread_lock=True,
                **launch_options(engine))
    # the page is served; now load the models in the background so the first click does not wait for them
    import threading
    threading.Thread(target=engine.warm_up, kwargs={"log": lambda m: print(f"MindEye Explorer: {m}")},
                     daemon=True).start()
    demo.block_thread()


if __name__ == "__main__":
    main()
