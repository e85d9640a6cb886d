"""vLLM's own CPU tuning advice, measured: its CPU installation guide asks for tcmalloc and Intel OpenMP (libiomp5)
in LD_PRELOAD "for best performance", and its CPU worker warns when they are missing. Does it pay here?

    .venv/bin/python benchmarks/cpu_tuning.py [--repeats 2] [--json tuning.json]

Runs the default study's latency, throughput and serve stages (each `vllm bench latency|throughput` starts its own
engine, serve runs its sweep on the study's server; all get the study's server.env) once per variant and repeat,
the variants interleaved (A B A B) so a drift of the host hits them alike: as shipped, and LD_PRELOAD with each
library the guide names that this host has (searched in the venv and the system library directories; a missing one
is said, not skipped silently). Prints per run and per variant mean: avg latency, steady decode ms/token,
requests/s, output tokens/s, serve's TPOT one request at a time and its output tokens/s saturated, and whether vLLM
still warned that the library is missing (its log is the proof the preload took). Run it alone on the machine:
timings under load are not figures. It prints; it does not assert.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from studies import ROOT, run_stages, study_variant

STAGES = "latency,throughput,serve"
# the names vLLM's CPU guide preloads, and where a pip venv or Debian puts them
LIBRARIES = {"iomp": ("libiomp5.so",), "tcmalloc": ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4")}
SEARCH = (ROOT / ".venv" / "lib", Path(sys.prefix) / "lib", Path("/usr/lib/x86_64-linux-gnu"), Path("/usr/lib"),
          Path("/usr/local/lib"))
# vLLM's CPU worker warns "<lib> is not found in LD_PRELOAD" for each one missing
WARNING = {"iomp": "libiomp is not found in LD_PRELOAD", "tcmalloc": "libtcmalloc is not found in LD_PRELOAD"}
FIGURES = (("latency", "avg_latency", "avg latency s"), ("latency", "decode_ms_per_token", "decode ms/token"),
           ("throughput", "requests_per_second", "req/s"), ("throughput", "output_tokens_per_s", "out tok/s"),
           ("serve", "sync_mean_tpot_ms", "serve TPOT ms c1"), ("serve", "saturated_output_throughput",
                                                                 "serve tok/s sat"))


def serve_point(serve: dict, saturated: bool) -> dict:
    """The sweep's synchronous point (one request at a time) or its saturated one (every request at once): the two
    the auto sweep always has; the rates between depend on them, so they differ between variants."""
    return next((r for r in serve.get("runs") or []
                 if r.get("request_rate") == "inf" and (r.get("max_concurrency") is None) == saturated), {})


READ = {"sync_mean_tpot_ms": lambda r: serve_point(r, False).get("mean_tpot_ms"),
        "saturated_output_throughput": lambda r: serve_point(r, True).get("output_throughput")}


def find_library(names: tuple[str, ...]) -> Path | None:
    return next((d / n for n in names for d in SEARCH if (d / n).is_file()), None)


def variants() -> tuple[dict[str, list[Path]], list[str]]:
    found = {k: find_library(v) for k, v in LIBRARIES.items()}
    have = {k: p for k, p in found.items() if p}
    out = {"as shipped": []} | {k: [p] for k, p in have.items()}
    if len(have) > 1:
        out[" + ".join(have)] = list(have.values())
    return out, [f"{k} ({' or '.join(LIBRARIES[k])}) not on this host" for k, p in found.items() if not p]


def measure(run_dir: Path | None) -> dict:
    row = {}
    for stage, key, _ in FIGURES:
        path = run_dir / "results" / f"{stage}.json" if run_dir else None
        result = json.loads(path.read_text()) if path and path.is_file() else {}
        row[key] = READ.get(key, lambda r: r.get(key))(result)
    # bench engines log under raw/, the serve stage's server under logs/
    logs = "".join(p.read_text(errors="replace") for p in [*(run_dir / "raw").rglob("*.log"),
                                                             *(run_dir / "logs").glob("*.log")]) if run_dir else ""
    row["still_warned"] = sorted(k for k, w in WARNING.items() if w in logs)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args(argv)
    table, missing = variants()
    for line in missing:
        print(line)
    tmp = Path(tempfile.mkdtemp(prefix="cpu-tuning-"))
    rows = []
    for i in range(args.repeats):
        for name, libs in table.items():
            env = {"LD_PRELOAD": ":".join(map(str, libs))} if libs else None
            code, run_dir, tail = run_stages(study_variant(tmp, "tuning-" + "".join(c for c in name if c.isalnum()) + f"-{i}", env), STAGES, tmp / "out")
            row = {"variant": name, "repeat": i + 1, "exit": code, "run_dir": str(run_dir), **measure(run_dir)}
            rows.append(row)
            print(f"{name:<18} #{i + 1} exit {code} " + "  ".join(f"{label} {row[key]}" for _, key, label in FIGURES)
                  + f"  vLLM still warned: {row['still_warned'] or 'no'}", flush=True)
            if code != 0:
                print(tail)
    print(f"\n{'variant':<18}" + "".join(f"{label:>16}" for _, _, label in FIGURES) + "   vs as shipped")
    base = None
    for name in table:
        mine = [r for r in rows if r["variant"] == name and r["exit"] == 0]
        means = [statistics.fmean(r[key] for r in mine) if mine else None for _, key, _ in FIGURES]
        base = base or means
        change = "  ".join(f"{label} {100 * (m / b - 1):+.1f} %" for (_, _, label), m, b in zip(FIGURES, means, base)
                           if m is not None and b)
        print(f"{name:<18}" + "".join(f"{m:>16.4g}" if m is not None else f"{'—':>16}" for m in means) + f"   {change}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
