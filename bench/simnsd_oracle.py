"""Simulate every SimNSD subject at the default size and record the noise ceilings, the oracle and timing.

    python bench/simnsd_oracle.py [--out data/simnsd] [--subj 1 2 5 7] [--force]

Writes bench/results/simnsd_oracle.json (``--force`` re-simulates, so the time column is real);
``python bench/readme_tables.py`` puts it in the README. Quick run (``BENCH_QUICK=1``): subject 1 only, into
bench/results/quick/.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import machine_info, quick, result_path, save_result  # noqa: E402
from mindeye.bundle import PROJECT_ROOT  # noqa: E402
from mindeye.data.canonical import subject_file  # noqa: E402
from mindeye.data.simnsd import SIMULATOR_VERSION, SUBJECTS, SimConfig, simulate  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(PROJECT_ROOT / "data" / "simnsd"))
    p.add_argument("--subj", type=int, nargs="+", default=[1] if quick() else list(SUBJECTS))
    p.add_argument("--force", action="store_true", help="re-simulate to time it")
    args = p.parse_args()
    rows = []
    for s in args.subj:
        # a quick run on a fresh clone simulates the subject anyway: then its time is real too
        timed = args.force or (quick() and not subject_file(Path(args.out), s).exists())
        t = time.time()
        summary = simulate(args.out, SimConfig(subj=s), force=args.force, log=lambda *a: None)
        rows.append({**summary, "seconds": round(time.time() - t, 1) if timed else None})
    res = {"bench": "simnsd_oracle", "simulator_version": SIMULATOR_VERSION, "seed": 0, "rows": rows,
           "machine": machine_info()}
    path = result_path("simnsd_oracle")
    if path.exists():  # keep the timings of the last forced run, and the subjects not rerun now
        old_rows = json.loads(path.read_text())["rows"]
        old = {r["subject"]: r.get("seconds") for r in old_rows}
        for r in rows:
            r["seconds"] = r["seconds"] or old.get(r["subject"])
        res["rows"] = sorted([r for r in old_rows if r["subject"] not in args.subj] + rows, key=lambda r: r["subject"])
    save_result("simnsd_oracle", res)
    from bench.readme_tables import render_simnsd_oracle
    print(render_simnsd_oracle(res))


if __name__ == "__main__":
    main()
