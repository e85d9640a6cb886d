"""Would the study have caught it? The default study's accuracy and tasks stages once per injected fault
(studykit.faults, a vLLM general plugin of the kit) and several clean times, then the verdicts.

    .venv/bin/python benchmarks/verdict_power.py [--clean 3] [--faults rope_style,decode_mask,...]

Prints fault x (accuracy verdict, tasks verdict, first real divergence, teacher-forced mean KL, task deltas),
then the clean false alarms. A fault that changes the greedy tokens of the default prompts must fail the study;
no clean run may fail. Each run's server log is read back for the plugin's "fault injection ACTIVE" line, so a
fault that silently did not load cannot read as "caught". It prints; it does not assert. The decode_delay fault
changes no token (it is issue 21's rerun probe) and is left out by default.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from studies import run_stages, study_variant
from studykit.faults.catalog import FAULTS, faults_in_log

STAGES = "accuracy,tasks"


def read(run_dir: Path, stage: str) -> dict:
    path = run_dir / "results" / f"{stage}.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def row(name: str, code: int, run_dir: Path | None) -> dict:
    acc = read(run_dir, "accuracy") if run_dir else {}
    tasks = read(run_dir, "tasks") if run_dir else {}
    logs = "".join(p.read_text(errors="replace") for p in (run_dir / "logs").glob("*.log")) if run_dir else ""
    real = [(pp.get("id"), d.get("position")) for pp in acc.get("per_prompt") or []
            for d in (pp.get("divergences") or []) if d.get("kind") == "divergence"]
    return {"fault": name, "exit": code, "active": [f for f, _ in faults_in_log(logs)],
            "accuracy": acc.get("status", "—"), "tasks": tasks.get("status", "—"),
            "first_real": real[0] if real else None, "real_divergences": len(real),
            "mean_kl": (acc.get("teacher_forced") or {}).get("mean_kl"),
            "task_deltas": {t["task"]: round(t["delta"]["value"], 4) for t in tasks.get("tasks") or []},
            "run_dir": str(run_dir)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clean", type=int, default=3, help="clean runs (false-alarm check)")
    ap.add_argument("--faults", default=",".join(f for f in FAULTS if f != "decode_delay"),
                    help="comma-separated fault specs (STUDYKIT_FAULT values)")
    ap.add_argument("--fault-stages", default=STAGES,
                    help="stages of the fault runs (a fault the accuracy stage fails is caught without the tasks "
                         "stage; the clean runs always run both, since a false alarm can come from either)")
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="verdict-power-"))
    rows = []
    plan = [(f, i) for i, f in enumerate(args.faults.split(";" if ";" in args.faults else ",")) if f] + \
        [(None, i) for i in range(args.clean)]
    for fault, i in plan:
        t0 = time.monotonic()
        params = study_variant(tmp, f"{(fault or 'clean').split(',')[0]}-{i}",
                               {"STUDYKIT_FAULT": fault} if fault else None)
        code, run_dir, _ = run_stages(params, args.fault_stages if fault else STAGES, tmp / "out")
        r = row(fault or f"clean #{i + 1}", code, run_dir)
        rows.append(r)
        print(f"{r['fault']:<28} exit {r['exit']}  accuracy {r['accuracy']:<7} tasks {r['tasks']:<7} "
              f"real divergences {r['real_divergences']:>3} first {r['first_real']}  mean KL "
              f"{r['mean_kl'] if r['mean_kl'] is None else round(r['mean_kl'], 5)}  deltas {r['task_deltas']}  "
              f"active {r['active']}  ({time.monotonic() - t0:.0f} s)", flush=True)
    faults = [r for r in rows if not r["fault"].startswith("clean")]
    clean = [r for r in rows if r["fault"].startswith("clean")]
    caught = [r for r in faults if r["exit"] != 0]
    print(f"\nfaults caught (study exit != 0): {len(caught)}/{len(faults)}; not caught: "
          f"{[r['fault'] for r in faults if r['exit'] == 0]}")
    print(f"clean false alarms: {sum(1 for r in clean if r['exit'] != 0)}/{len(clean)}")
    inactive = [r["fault"] for r in faults if not r["active"]]
    if inactive:
        print(f"WARNING: the plugin did not log these faults as active: {inactive}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
