"""The README's measured tables, generated from bench/results/*.json (never typed by hand).

    .venv/bin/python bench/readme_tables.py          # rewrite the README's generated blocks
    .venv/bin/python bench/readme_tables.py --check  # exit 1 if the README and the results disagree (CI)
    .venv/bin/python bench/readme_tables.py --results bench/results/quick --print  # print, write nothing

A generated block sits between ``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->``. ``--print`` prints a
headline summary and the same tables for the results in ``--results`` without touching the README; a quick run
(``BENCH_QUICK=1``, as ``make bench QUICK=1`` sets) does that for bench/results/quick/, never writing the README.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
RESULTS = ROOT / "bench" / "results"  # the full figures, the only ones the README is generated from


def _pct(d: dict) -> str:
    lo, hi = d.get("ci95", [None, None])
    core = f"{100 * d['mean']:.1f}" if isinstance(d, dict) and "mean" in d else f"{100 * d:.1f}"
    return f"{core} [{100 * lo:.0f}-{100 * hi:.0f}]" if lo is not None else core


def _pair(d: dict) -> str:
    def one(x):
        return _pct(x) if isinstance(x, dict) else f"{100 * x:.1f}"
    return f"{one(d['image'])} / {one(d['brain'])}" if "brain" in d else f"{one(d['image'])} / -"


def render_mindeye_table(res: dict) -> str:
    lines = ["| subj | target | oracle (3-trial avg) | oracle (1 trial) | linear ceiling (noise-free ridge) | ridge "
             "| MindEye | MindEye - ridge | s / epoch | samples / s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        me, rd = r["mindeye"], r["ridge"]
        gap = f"{100 * (me['image']['mean'] - rd['image']['mean']):+.1f} / {100 * (me['brain']['mean'] - rd['brain']['mean']):+.1f}"
        sp = r.get("speed", {})
        shape = "x".join(str(x) for x in r["target_shape"])
        lines.append(f"| {r['subj']} | {r['target']} ({shape}) | {_pair(r['oracle'])} | {100 * r['oracle_single_trial']['image']:.1f} "
                     f"| {_pair(r['linear_ceiling'])} | {_pair(rd)} | **{_pair(me)}** | {gap} "
                     f"| {sp.get('seconds_per_epoch', float('nan')):.1f}{'*' if sp.get('note') else ''} "
                     f"| {sp.get('samples_per_s', float('nan')):.0f} |")
    by_machine = {}  # rows measured by one machine and commit (a partial rerun keeps the others' rows)
    for r in res["rows"]:
        m = r.get("machine", res["machine"])
        key = f"{m['cores']} cores ({m['cpu']}, {m['torch_threads']} torch threads), commit {m['commit']}"
        by_machine.setdefault(key, []).append(str(r["subj"]))
    measured = "; ".join(f"{key} for subject{'s' if len(set(subs)) > 1 else ''} {', '.join(dict.fromkeys(subs))}"
                         for key, subs in by_machine.items()) if len(by_machine) > 1 else next(iter(by_machine))
    src = [f"subject {r['subj']} {r['target']}: {r['mindeye_source']}, {r['mindeye_checkpoint']}"
           + (f", with {r['synthetic_trials']:,} synthetic trials" if r.get("synthetic_trials") else "")
           + (f" x {r['synthetic_frac']:g} per real trial" if r.get("synthetic_frac") else "")
           + (f" (encoding model: {r['synthetic_encoding'].split(': ', 1)[-1].split(',')[0]})"
              if r.get("synthetic_encoding") else "")
           + (f", init {r['init_scope'].replace('_', ' + ')} from the hidden network" if r.get("init_scope") else "")
           for r in res["rows"]]
    lines += ["", f"300-way top-1 %, image / brain retrieval, mean [central 95% of the 30 draws]. "
                  f"Measured on {measured}, by `bench/mindeye_table.py`"
                  + ("; * speed read on the machine that trained the shipped run" if any(
                      r.get("speed", {}).get("note") for r in res["rows"]) else "")
                  + ". MindEye: " + "; ".join(src) + "."]
    return "\n".join(lines)


def render_simnsd_oracle(res: dict) -> str:
    lines = ["| subject | voxels | trials | median ncsnr (V1 / V2 / V3 / VO / LO / IPS) | median NC 1 / 3 trials "
             "| oracle 300-way top-1, 3-trial avg / single trial | simulate (s) |", "|---|---|---|---|---|---|---|"]
    for s in res["rows"]:
        areas = " / ".join(f"{v:.2f}" for v in s["median_ncsnr_by_area"].values())
        sec = f"{s['seconds']:.0f}" if s.get("seconds") else "-"
        lines.append(f"| {s['subject']} | {s['n_voxels']} | {s['n_trials']} | {s['median_ncsnr']:.3f} ({areas}) "
                     f"| {s['median_noise_ceiling_1trial']:.1f}% / {s['median_noise_ceiling_3trials']:.1f}% "
                     f"| {100 * s['oracle_top1_averaged']:.1f}% / {100 * s['oracle_top1_single_trial']:.1f}% | {sec} |")
    m = res["machine"]
    lines += ["", f"SimNSD {res['simulator_version']}, seed {res['seed']}; measured on {m['cores']} cores ({m['cpu']}) "
                  f"by `bench/simnsd_oracle.py`."]
    return "\n".join(lines)


def render_demo_preset(res: dict, results: Path = RESULTS) -> str:
    r = res.get("ridge_final_target")
    table = Path(results) / "mindeye_table.json"
    if r is None and table.exists():  # ridge on the same target and data, from the decoding bench
        row = next((x for x in json.loads(table.read_text())["rows"] if x["subj"] == 1 and x["target"] == "final"), None)
        r = {"image": row["ridge"]["image"]["mean"], "brain": row["ridge"]["brain"]["mean"]} if row else None
    ridge = f"{100 * r['image']:.1f}% / {100 * r['brain']:.1f}%" if r else "not measured"
    return (f"The demo preset (`train --preset demo`) trains {len(res['epoch_seconds'])} epochs in "
            f"{res['train_seconds']:.0f} s ({res['wall_seconds_incl_setup']:.0f} s with setup) and ends at "
            f"{100 * res['final_test_image_top1']:.1f}% / {100 * res['final_test_brain_top1']:.1f}% test top-1 "
            f"(val {100 * res['final_val_image_top1']:.1f}% / {100 * res['final_val_brain_top1']:.1f}%), against ridge's "
            f"{ridge} on the same target; it reaches half of its final test accuracy after "
            f"{res['half_reached_at_s']:.0f} s (epoch {res['half_reached_epoch']}) and writes a metrics line at least "
            f"every {res['max_seconds_between_metric_lines']:.1f} s (`bench/demo_preset.py`, {res['machine']['cores']} cores, "
            f"{res['machine']['torch_threads']} torch thread(s)).")


def render_recon_table(res: dict) -> str:
    cols = res["columns"]
    names = list(cols)
    lines = ["| metric | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for metric in cols[names[0]]:
        if metric == "n":
            continue
        cells = [cols[n].get(metric, "") for n in names]
        cells = [f"{c:.3f}" if isinstance(c, float) else str(c) for c in cells]
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    lat = res.get("latency_one_trial_s", {})
    lat_s = ", ".join(f"N = {k}: {v:.1f} s" for k, v in lat.items())
    m = res["machine"]
    strength = (f" img2img strength {res['strength']:g} ({res['strength_from']})." if "strength_from" in res else "")
    lines += ["", f"{res['trials']} of SimNSD subject 1, {res['samples_per_trial']} samples per trial (second-order "
                  f"pick), {res['steps']} UniPC steps, guidance {res['guidance']}.{strength} One trial's reconstruction at the "
                  f"table's strength: {lat_s}. Peak RSS of the bench process (every trial's pictures in memory) "
                  f"{res['peak_rss_mb']} MB. Measured on {m['cores']} cores "
                  f"({m['cpu']}) by `bench/recon_table.py`."]
    return "\n".join(lines)


def measured_by(res: dict, bench: str) -> str:
    """The tables' closing sentence: the machine in ``res`` and the bench script that measured it."""
    m = res["machine"]
    return f"Measured on {m['cores']} cores ({m['cpu']}) by `bench/{bench}.py`."


RECON_SHORT = {"judge shape_largest": "shape", "judge colour_largest": "colour", "judge count": "count",
               "judge position_largest_within_0.1": "position", "bundle CLIP 2-way": "CLIP 2-way",
               "PixCorr (96 px)": "PixCorr"}


def recon_cells(scores: dict, keys) -> list[str]:
    """A reconstruction score per key as the tables print it: similarities to 3 places, judge rates in %."""
    return [f"{scores[k]:.3f}" if "PixCorr" in k or "2-way" in k else f"{100 * scores[k]:.0f}%" for k in keys]


def render_recon_strength(res: dict) -> str:
    crit = res["criterion"]
    averaged = len(res.get("averages", [1])) > 1  # a column for the prior draws averaged, when more than one k was tried
    lines = ["| source | " + ("prior draws averaged | " if averaged else "") + "strength | "
             + " | ".join(RECON_SHORT.get(k, k) for k in crit) + f" | background | mean of the {len(crit)} (the rule) |",
             "|---|---|" + ("---|" if averaged else "") + "---|" * (len(crit) + 2)]
    for r in res["rows"]:
        chosen = (r["source"] == "mindeye" and r["strength"] == res["chosen_strength"]
                  and r.get("prior_average", 1) == res.get("chosen_average", 1))
        strength = "-" if r["strength"] is None else f"{r['strength']:g}" + (" (chosen)" if chosen else "")
        k = ("-" if r["strength"] is None else str(r.get("prior_average", 1))) if averaged else None
        cells = recon_cells(r["scores"], crit)
        mean = f"**{r['criterion']:.3f}**" if chosen else f"{r['criterion']:.3f}"
        lines.append(f"| {r['source']} | " + (f"{k} | " if averaged else "") + f"{strength} | " + " | ".join(cells)
                     + f" | {100 * r['scores']['judge background']:.0f}% | {mean} |")
    lines += ["", f"The first {res['n']} val images of SimNSD subject 1 (never test), {res['samples_per_image']} samples "
                  f"per image (second-order pick), {res['steps']} UniPC steps, guidance {res['guidance']:g}. Judge "
                  f"rates are of the largest object (position within 0.1)."
                  + (" A sample's tokens are the mean of k prior draws." if averaged else "")
                  + " " + measured_by(res, "recon_strength")]
    return "\n".join(lines)


def render_recon_selection(res: dict) -> str:
    crit = res["criterion"]
    lines = ["| strength | second-order pick | " + " | ".join(RECON_SHORT.get(k, k) for k in crit)
             + f" | mean of the {len(crit)} |", "|---|---|" + "---|" * (len(crit) + 1)]
    for r in res["rows"]:
        cells = recon_cells(r["scores"], crit)
        lines.append(f"| {r['strength']:g} | {r['pick']} | " + " | ".join(cells) + f" | {r['criterion']:.3f} |")
    lines += ["", f"The first {res['n']} val images of SimNSD subject 1 (never test), {res['samples_per_image']} samples "
                  f"per image drawn once per strength and picked three ways, {res['steps']} UniPC steps, guidance "
                  f"{res['guidance']:g}. " + measured_by(res, "recon_selection")]
    return "\n".join(lines)


def render_attribute_probe(res: dict) -> str:
    attrs = ("shape", "colour", "count")
    lines = ["| probe input | " + " | ".join(f"{a} of the largest object" if a != "count" else "object count"
                                          for a in attrs) + " |", "|---|" + "---|" * len(attrs)]
    for r in res["rows"]:
        lines.append(f"| {r['input']} | " + " | ".join(f"{100 * r[a]:.0f}%" for a in attrs) + " |")
    lines.append("| chance (the most frequent class) | " + " | ".join(f"{100 * res['chance'][a]:.0f}%" for a in attrs) + " |")
    ps = res["prior_sampling"]
    lines += ["", f"Linear probes (logistic regression, C = {res['C']:g}) fitted on SimNSD subject 1's "
                  f"{res['n_train_images']} train images, scored on the first {res['n']} val images (never test). "
                  f"Prior sample: {ps['steps']} steps, guidance {ps['guidance_scale']:g}, one draw. "
                  + measured_by(res, "attribute_probe")]
    return "\n".join(lines)


def render_final_alternatives(res: dict) -> str:
    lines = ["| tried on the shipped final model | val top-1, image / brain |", "|---|---|"]
    for i, r in enumerate(res["rows"]):
        cell = f"{100 * r['image']:.1f} / {100 * r['brain']:.1f}"
        lines.append(f"| {r['variant']} | {'**' + cell + '**' if i == 0 else cell} |")
    lines += ["", f"SimNSD subject 1, val split ({res['n']} images), 300-way top-1 image / brain. "
                  + measured_by(res, "final_alternatives")]
    return "\n".join(lines)


def render_decoder_cond_noise(res: dict) -> str:
    crit = res["criterion"]
    cases = [k for k in res["rows"][0] if isinstance(res["rows"][0][k], dict)]
    lines = ["| decoder | tokens drawn from | " + " | ".join(RECON_SHORT.get(k, k) for k in crit) + " |",
             "|---|---|" + "---|" * len(crit)]
    for r in res["rows"]:
        name = (f"base: the bundle's decoder at commit {res['machine']['commit']} (cond_noise {r['cond_noise']:g})"
                if r["decoder"] in ("base", "shipped") else
                f"{r['decoder']}: {r['finetune_steps']} more steps, cond_noise {r['cond_noise']:g}")
        for case in cases:
            lines.append(f"| {name} | {case} | " + " | ".join(recon_cells(r[case], crit)) + " |")
    lines += ["", f"The first {res['n']} val images of SimNSD subject 1 (never test); {res['sampling']}. One prior "
                  f"sample's RMS error against the true tokens: {res['prior_rms_error']:g} (the tokens' own RMS: "
                  f"{res['token_rms']:g}); cond_noise = {res['noise_mult']:g} x that. Both fine-tunes start from the "
                  f"base decoder at learning rate {res['finetune_lr']:g} on freshly rendered training scenes. "
                  + measured_by(res, "decoder_cond_noise")]
    return "\n".join(lines)


def render_retrieval_latency(res: dict) -> str:
    lines = [f"| pool | size | search | ms per query (median) | recall@{res['recall_at']} vs exact |", "|---|---|---|---|---|"]
    for r in res["rows"]:
        lines.append(f"| {r['pool']} | {r['n']:,} | {r['method']} | {r['ms_median']:.2f} | {r['recall@' + str(res['recall_at'])]:.2f} |")
    m = res["machine"]
    lines += ["", f"top-{res['k']}, dim {res['dim']}, {res['queries']} single queries per row; {res['note']}. Measured on "
                  f"{m['cores']} cores ({m['cpu']}, {m['torch_threads']} torch thread, 1-min load average "
                  f"{m.get('load_avg_1min', '?')} while it ran) by `bench/retrieval_latency.py`."]
    return "\n".join(lines)


def render_prior_sampling(res: dict) -> str:
    n = res["n_val"]
    lines = [f"| DDPM steps | guidance | val token cosine | val {n}-way top-1 | s for {n} images |", "|---|---|---|---|---|"]
    ch = res["chosen"]
    for r in res["rows"]:
        mark = " (chosen)" if (r["steps"], r["guidance_scale"]) == (ch["steps"], ch["guidance_scale"]) else \
            (" (V1)" if (r["steps"], r["guidance_scale"]) == (100, 1.0) else "")
        lines.append(f"| {r['steps']}{mark} | {r['guidance_scale']:g} | {r['val_token_cosine']:.3f} "
                     f"| {100 * r[f'val_{n}way_top1']:.0f}% | {r['seconds']:.0f} |")
    lines += ["", f"The shipped hidden model ({res['model']}), the first {n} val images, seed {res['seed']}; chance "
                  f"{100 / n:.0f}%. " + measured_by(res, "prior_sampling")]
    return "\n".join(lines)


def measured_on(res: dict, bench: str) -> str:
    """"Measured on ..." for a recipe bench whose rows may come from several runs: each machine and commit, with
    the variants it measured when there is more than one."""
    groups: dict[tuple, list[str]] = {}
    for r in res["rows"]:
        m = r.get("machine") or res["machine"]
        groups.setdefault((m["cores"], m["cpu"], m["torch_threads"], m["commit"]), []).append(r["variant"])
    parts = [f"{c} cores ({cpu}, {t} torch threads), commit {commit}"
             + (f" ({', '.join(v)})" if len(groups) > 1 else "") for (c, cpu, t, commit), v in groups.items()]
    return f"Measured on {'; '.join(parts)}, by `bench/{bench}.py`."


def render_final_recipe(res: dict) -> str:
    lines = ["| variant | val top-1, image / brain | val-best epoch | encoding model: median val voxel r | s / epoch |",
             "|---|---|---|---|---|"]
    for r in res["rows"]:
        v = r["val"]
        bold = "**" if r.get("shipped") else ""
        lines.append(f"| {r['what']}" + (" (shipped)" if r.get("shipped") else "") + f" | {bold}{100 * v['image']:.1f} / {100 * v['brain']:.1f}{bold} | {v['epoch']} "
                     f"| {_f(r.get('encoding_val_median_r'), '.3f')} | {_f(v.get('seconds_per_epoch'))} |")
    lines += ["", f"SimNSD subject {res['subject']}, {res['protocol']}. {measured_on(res, 'final_recipe')}"]
    return "\n".join(lines)


def render_lowlevel_recipe(res: dict) -> str:
    lines = ["| variant | val PixCorr | val SSIM | val-best epoch | s / epoch | train time |", "|---|---|---|---|---|---|"]
    for r in res["rows"]:
        v = r["val"]
        bold = "**" if r.get("shipped") else ""
        what = r["what"] + (" (shipped)" if r.get("shipped") else "")
        build = r.get("synthetic_build_seconds")
        lines.append(f"| {what} | {bold}{v['pixcorr']:.3f}{bold} | {v['ssim']:.3f} | {v['epoch']} of {v['epochs']} "
                     f"| {_f(v.get('seconds_per_epoch'))} | {_f(v['train_seconds'] / 60, '.0f')} min"
                     + (f" (+ {build / 60:.0f} min for the synthetic set)" if build else "") + " |")
    lines += ["", f"SimNSD subject {res['subject']}, {res['protocol']}. {measured_on(res, 'lowlevel_recipe')}"]
    return "\n".join(lines)


def render_prior_identity(res: dict) -> str:
    n = res["n"]
    labels = {"projected": "BrainNetwork, projected tokens (retrieval's space)",
              "backbone": "BrainNetwork, backbone tokens (what the prior reads)", "one_sample": "prior, one sample",
              "prior_mean": "prior, its first-step estimate from pure noise (the posterior mean)",
              **{k: f"prior, mean of {k.rsplit('_', 1)[1]} samples" for r in res["rows"] for k in r
                 if k.startswith("mean_of_")},
              "pick_by_projected": f"prior, of {res.get('pick_of')} samples the one nearest the projected tokens",
              "pick_by_truth": f"prior, of {res.get('pick_of')} samples the one nearest the true tokens (oracle)",
              "one_sample_train_images": f"prior, one sample, {n} **train** images"}
    baseline = next((r["ridge"] for r in res["rows"] if "ridge" in r), None)  # one row, the same for every model
    rows = [r for r in res["rows"] if "ridge" not in r]
    labels = {k: v for k, v in labels.items() if any(k in r for r in rows)}
    models = [r["model"] for r in rows]
    lines = ["| tokens | " + " | ".join(f"{m}: cosine / {n}-way top-1" for m in models) + " |",
             "|---|" + "---|" * len(models)]
    for key, label in labels.items():
        lines.append(f"| {label} | " + " | ".join(f"{r[key]['token_cosine']:.3f} / {100 * r[key]['top1']:.0f}%"
                                                   if key in r else "-" for r in rows) + " |")
    m = res["machine"]
    ridge = (f" The ridge baseline's linear prediction of the same tokens: cosine {baseline['token_cosine']:.3f}, "
             f"top-1 {100 * baseline['top1']:.0f}%." if baseline else "")
    lines += ["", f"The first {n} val images (and {n} train images where it says so), {res['steps']} DDPM steps, "
                  f"guidance {res['guidance_scale']:g} (the shipped model's sampling) for every model; chance "
                  f"{100 / n:.0f}%.{ridge} Measured on {m['cores']} cores "
                  f"({m['cpu']}) by `bench/prior_identity.py`."]
    return "\n".join(lines)


def render_app_figures(res: dict) -> str:
    t, r = res["trial_change"], res["reconstruct_4_samples_s"]
    lines = ["| what | measured | goal |", "|---|---|---|",
             f"| cold start to a served page | {res['cold_start_s']:.1f} s | ≤ 10 s |",
             f"| models loaded in the background, from start | {res['models_loaded_s']:.1f} s | |",
             f"| a trial change in Trials: server time, p50 / p95 | {t['server_p50_s']:.3f} / {t['server_p95_s']:.3f} s | ≤ 0.5 s |",
             f"| the same through HTTP and the queue (gradio_client round trip), p50 / p95 | {t['p50_s']:.2f} / {t['p95_s']:.2f} s | |",
             f"| bytes sent per trial change (max) | {t['max_kb_sent']:.0f} KB | ≤ 300 KB |",
             f"| a demo reconstruction, 4 samples (median of {len(r['runs'])}) | {r['median']:.1f} s | ≤ 5 s |",
             f"| server RSS after start / peak | {res['rss_after_start_mb']} / {res['peak_rss_mb']} MB | peak ≤ 1,536 MB |"]
    m = res["machine"]
    lines += ["", f"Measured on {m['cores']} cores ({m['cpu']}; 1-min load average {m.get('load_avg_1min', '?')} at "
                  f"the end) by `bench/app_figures.py`, commit {m['commit']}. A trial change is `/trial` and `/brain_view` "
                  f"(values per voxel for four panels); the surface mesh is a file the browser fetches once."]
    return "\n".join(lines)


def render_load_test(res: dict) -> str:
    lines = ["| endpoint | requests | p50 | p95 |", "|---|---|---|---|"]
    for name, e in res["endpoints"].items():
        p50 = f"{e['p50_s']:.1f} s" if e["p50_s"] is not None else "-"
        p95 = f"{e['p95_s']:.1f} s" if e["p95_s"] is not None else "-"
        lines.append(f"| {name} | {e['requests']} | {p50} | {p95} |")
    m = res["machine"]
    lines += ["", f"{res['students']} simulated students (gradio_client sessions without pauses: each sends its next "
                  f"request as soon as the last one answers) for {res['seconds']:.0f} s"
                  + (" beside a training run" if res.get("training_run_alongside") else "")
                  + f": {res['requests']} requests, **{res['errors']} errors**. Measured on {m['cores']} cores by "
                  f"`bench/load_test.py`, commit {m['commit']}."]
    return "\n".join(lines)


def render_vision_stack(res: dict) -> str:
    c, d = res["clip"], res["decoder"]
    pct = lambda x: f"{100 * x:.1f}%"  # noqa: E731
    lines = ["| SceneCLIP | measured | bar |", "|---|---|---|",
             f"| linear probe on the final embedding: largest object's shape | {pct(c['probe_shape_largest'])} | ≥ 80% |",
             f"| ... its colour | {pct(c['probe_colour_largest'])} | ≥ 90% |",
             f"| ... the background | {pct(c['probe_background'])} | |",
             f"| caption retrieval, top-1 of {res['n_test']} | {pct(c['caption_top1'])} | ≥ 85% |", "",
             "| decoder | on reconstructions | on the originals | originals through the VAE alone | bar (recons) |",
             "|---|---|---|---|---|"]
    rows = (("judge names the largest object's shape", "shape_largest", "≥ 60%"),
            ("... its colour", "colour_largest", "≥ 80%"), ("... the background", "background", ""),
            ("... the object count", "count", ""),
            ("... the largest object's position (within 0.1)", "position_largest_within_0.1", ""))
    for label, k, bar in rows:
        lines.append(f"| {label} | {pct(d['judge_on_recons'][k])} | {pct(d['judge_on_originals'][k])} "
                     f"| {pct(d['judge_on_vae_recons'][k])} | {bar} |")
    px = d["pixel_metrics_at"]
    lines += [f"| CLIP-space identification, top-1 of {d['n']} | {pct(d['clip_top1_of_n'])} | | | ≥ 60% |",
              f"| CLIP-space 2-way identification | {pct(d['clip_2way'])} | | | (reported) |",
              f"| PixCorr ({px} px) | {d['pixcorr']:.3f} | | {d['vae_pixcorr']:.3f} | ≥ 0.5 |",
              f"| SSIM ({px} px) | {d['ssim']:.3f} | | {d['vae_ssim']:.3f} | ≥ 0.35 |", ""]
    lat = res.get("latency_s_per_image") or {}
    m = res["machine"]
    lines.append(f"{res['n_test']} held-out SimNSD test scenes, reconstructions from each scene's own SceneCLIP hidden "
                 f"states, {res['steps']} UniPC steps, guidance {res['guidance_scale']}, no img2img; the "
                 f"{d['n']} reconstructions took {d['decode_seconds']:.0f} s"
                 + (f"; sampling latency {lat['batch1']:.2f} s per image at batch 1, {lat['batch16']:.2f} s at batch 16"
                    if lat else "")
                 + f". Measured on {m['cores']} cores ({m['cpu']}, {res['threads']} threads) by `bench/vision_stack.py`, "
                   f"commit {m['commit']}.")
    return "\n".join(lines)


def render_build_times(res: dict) -> str:
    parts = []
    for r in res["stages"]:
        t = "not recorded" if r["seconds"] is None else f"{r['seconds'] / 60:.0f} min"
        parts.append(f"{r['stage']} {t}" + (f" ({r['detail']})" if r["detail"] and r["seconds"] is not None else ""))
    return ("Build time of the shipped bundle, stage by stage, as its trainers recorded it when it was built (wall "
            "clock on the 2-core machines that built them, in fp32, or in bf16 where the CPU has it (`--mixed_precision auto`); some stages ran side by side): " + "; ".join(parts)
            + f". Recorded stages total {res['total_recorded_seconds'] / 3600:.1f} h. Read by `bench/build_times.py` from "
            f"the bundle's metadata.")


RENDERERS = {"load_test": render_load_test, "app_figures": render_app_figures, "prior_sampling": render_prior_sampling, "prior_identity": render_prior_identity, "final_recipe": render_final_recipe, "lowlevel_recipe": render_lowlevel_recipe, "retrieval_latency": render_retrieval_latency, "mindeye_table": render_mindeye_table, "simnsd_oracle": render_simnsd_oracle,
             "demo_preset": render_demo_preset, "recon_table": render_recon_table,
             "recon_strength": render_recon_strength, "recon_selection": render_recon_selection,
             "attribute_probe": render_attribute_probe, "final_alternatives": render_final_alternatives, "decoder_cond_noise": render_decoder_cond_noise,
             "build_times": render_build_times,
             "vision_stack": render_vision_stack}


def generated_readme(text: str) -> str:
    for name, render in RENDERERS.items():
        path = RESULTS / f"{name}.json"
        if not path.exists():
            continue
        block = render(json.loads(path.read_text()))
        pat = re.compile(rf"(<!-- generated:{name} -->\n)(?:.*?\n)?(<!-- /generated:{name} -->)", re.S)
        text = pat.sub(lambda m: m.group(1) + block + "\n" + m.group(2), text)
    return text


# the order the benches run in (make bench)
ORDER = ("simnsd_oracle", "mindeye_table", "final_recipe", "final_alternatives", "lowlevel_recipe", "demo_preset", "recon_strength", "recon_selection", "attribute_probe", "decoder_cond_noise", "recon_table", "gpu_real_size", "retrieval_latency",
         "app_figures", "load_test", "prior_sampling", "prior_identity", "build_times", "vision_stack")


def _f(x, spec: str = ".1f", scale: float = 1.0) -> str:
    return format(scale * x, spec) if isinstance(x, (int, float)) else "-"


def headlines(name: str, res: dict) -> list[str]:
    """A line or a few per bench: the figures to look at first."""
    if name == "simnsd_oracle":
        return [f"subject {s['subject']}: oracle top-1 {_f(s['oracle_top1_averaged'], scale=100)}% (3-trial avg) / "
                f"{_f(s['oracle_top1_single_trial'], scale=100)}% (1 trial), median ncsnr {_f(s['median_ncsnr'], '.3f')}"
                + (f", simulated in {s['seconds']:.0f} s" if s.get("seconds") else "") for s in res["rows"]]
    if name == "mindeye_table":
        def means(d):
            return f"{_f(d['image']['mean'], scale=100)} / {_f(d['brain']['mean'], scale=100)}"
        return [f"subject {r['subj']} {r['target']}: MindEye {means(r['mindeye'])}, ridge {means(r['ridge'])}, "
                f"linear ceiling {means(r['linear_ceiling'])}" + (" (300-way top-1 %, image / brain)" if i == 0 else "")
                for i, r in enumerate(res["rows"])]
    if name == "demo_preset":
        return [f"{len(res['epoch_seconds'])} epochs in {res['train_seconds']:.0f} s: test top-1 "
                f"{_f(res['final_test_image_top1'], scale=100)}% / {_f(res['final_test_brain_top1'], scale=100)}% "
                f"(image / brain), half of it after {res['half_reached_at_s']:.0f} s, a metrics line at least every "
                f"{res['max_seconds_between_metric_lines']:.1f} s"]
    if name == "recon_table":
        keys = ("PixCorr (96 px)", "SSIM (96 px)", "bundle CLIP 2-way")
        out = [f"{col}: " + ", ".join(f"{k} {_f(m.get(k), '.3f')}" for k in keys) for col, m in res["columns"].items()]
        lat = ", ".join(f"N = {k}: {v:.1f} s" for k, v in res.get("latency_one_trial_s", {}).items())
        return out + [f"{res['trials']}, {res['samples_per_trial']} sample(s) per trial"
                      + (f"; one trial's reconstruction {lat}" if lat else "")]
    if name == "gpu_real_size":
        return [f"train step {res.get('train_step_s')} s ({res.get('train_peak_gb')} GB), reconstruction of "
                f"{res.get('recon_samples')} samples {res.get('recon_s')} s ({res.get('recon_peak_gb')} GB)"]
    if name == "retrieval_latency":
        out = []
        for n in sorted({r["n"] for r in res["rows"]}):
            rows = [r for r in res["rows"] if r["n"] == n]
            exact = next(r for r in rows if r["method"].startswith("exact"))
            ivf = next((r for r in rows if "default" in r["method"]), None)
            out.append(f"{n:,} vectors: exact {exact['ms_median']:.2f} ms / query"
                       + (f", IVF at the default nprobe {ivf['ms_median']:.2f} ms, recall@{res['recall_at']} "
                          f"{ivf['recall@' + str(res['recall_at'])]:.2f}" if ivf else ""))
        return out
    if name == "app_figures":
        t, r = res["trial_change"], res["reconstruct_4_samples_s"]
        return [f"cold start {res['cold_start_s']:.1f} s (goal <= 10), models loaded at {res['models_loaded_s']:.1f} s",
                f"trial change: server p50 {t['server_p50_s']:.3f} s (goal <= 0.5), round trip p50 {t['p50_s']:.2f} s, "
                f"max {t['max_kb_sent']:.0f} KB sent (goal <= 300)",
                f"4-sample reconstruction median {r['median']:.1f} s (goal <= 5); peak RSS {res['peak_rss_mb']} MB "
                f"(goal <= 1,536)"]
    if name == "load_test":
        e = res["endpoints"]
        return [f"{res['students']} students for {res['seconds']:.0f} s"
                + (" beside a training run" if res.get("training_run_alongside") else "")
                + f": {res['requests']} requests, {res['errors']} errors",
                "p50 / p95: " + ", ".join(f"{k} {_f(v['p50_s'])} / {_f(v['p95_s'])} s" for k, v in e.items())]
    if name == "final_recipe":
        return [f"{r['variant']}: val {_f(r['val']['image'], scale=100)} / {_f(r['val']['brain'], scale=100)}"
                for r in res["rows"]]
    if name == "lowlevel_recipe":
        return [f"{r['variant']}: val PixCorr {r['val']['pixcorr']:.3f}" + (" (shipped)" if r.get("shipped") else "")
                for r in res["rows"]]
    if name == "prior_identity":
        return [f"{r['model']}: projected top-1 {_f(r['projected']['top1'], '.0f', 100)}%, one prior sample "
                f"{_f(r['one_sample']['top1'], '.0f', 100)}% (cosine {_f(r['one_sample']['token_cosine'], '.3f')}), "
                f"on train images {_f(r['one_sample_train_images']['top1'], '.0f', 100)}%" for r in res["rows"]
                if "one_sample" in r] + [f"ridge baseline: top-1 {_f(r['ridge']['top1'], '.0f', 100)}% (cosine "
                                         f"{_f(r['ridge']['token_cosine'], '.3f')})" for r in res["rows"] if "ridge" in r]
    if name == "recon_strength":
        return [f"strength {r['strength']:g}: mean of the rule's scores {r['criterion']:.3f}" for r in res["rows"]
                if r["strength"] is not None] + [f"chosen on val: {res['chosen_strength']:g}"]
    if name == "prior_sampling":
        ch = res["chosen"]
        return [f"chosen: {ch['steps']} DDPM steps, guidance {ch['guidance_scale']:g}"]
    return []


def print_results(results: Path) -> int:
    """Print a headline summary of every result in ``results``, then the README's tables rendered from them."""
    results = Path(results)
    found = {name: json.loads((results / f"{name}.json").read_text()) for name in ORDER
             if (results / f"{name}.json").exists()}
    if not found:
        print(f"no bench results in {results}", file=sys.stderr)
        return 1
    try:
        where = results.resolve().relative_to(ROOT)
    except ValueError:
        where = results
    quick = any(r.get("quick") for r in found.values())
    title = f"bench results in {where}" + (" (a QUICK run: small sizes, not the README's figures)" if quick else "")
    print(f"\n{title}\n{'=' * len(title)}\n")
    width = max(len(n) for n in ORDER)
    print(f"| {'bench':<{width}} | headline |\n|{'-' * (width + 2)}|---|")
    for name in ORDER:
        if name not in found:
            if name != "prior_sampling":  # not part of make bench
                print(f"| {name:<{width}} | no result (skipped, e.g. no GPU, or not run) |")
            continue
        for i, line in enumerate(headlines(name, found[name])):
            print(f"| {name if i == 0 else '':<{width}} | {line} |")
    for name, res in found.items():
        if name in RENDERERS:
            render = RENDERERS[name]
            block = render(res, results) if render is render_demo_preset else render(res)
            print(f"\n## {name}\n\n{block}")
    print()
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="fail if the README's generated blocks are stale")
    p.add_argument("--print", dest="print_only", action="store_true",
                   help="print a summary and the tables of --results; write nothing")
    p.add_argument("--results", type=Path, default=None,
                   help="results folder for --print (default: bench/results, or bench/results/quick on a quick run)")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from bench.machine import quick
    if args.results is not None and not args.print_only:
        p.error("--results goes with --print (the README is generated from bench/results only)")
    if not args.check and (args.print_only or quick()):  # a quick run never writes the README
        code = print_results(args.results or (RESULTS / "quick" if quick() else RESULTS))
        if quick() and not args.print_only:
            print("BENCH_QUICK is set: printed the quick results; README.md not touched", file=sys.stderr)
        return code
    text = README.read_text()
    new = generated_readme(text)
    if args.check:
        if new != text:
            print("README.md is out of date with bench/results: run python bench/readme_tables.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
