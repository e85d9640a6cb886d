"""The Ascend profile's dry run reproduces the seed report's commands (tests/data/ascend/seed-commands.sh).

Equal means: every flag and value of the seed command is in ours. What ours adds or changes is listed here
exactly, each with its reason, so any other difference fails:
- the model argument is the ModelScope download directory of OpenBMB/BitCPM4-0.5B@<revision> instead of the
  bare id (the kit downloads first, then serves the files it checked), and the server answers to the id
  (--served-model-name), bound to 127.0.0.1;
- modelscope download pins --revision and a --local_dir in the kit cache;
- throughput: the seed's --input-len/--output-len were ignored by vllm bench throughput (the random dataset's
  defaults won: its report counts 102,400 prompt tokens for 100 prompts); ours passes the lengths to the
  random dataset;
- bench latency/throughput get the server's engine flags (--max-model-len, --max-num-seqs), and latency
  states vLLM's default iteration counts (10 warm-up, 30 measured) that the seed ran with implicitly;
- bench serve names the tokenizer directory, warms up and fixes the dataset seed.
"""

import json
import shlex
from pathlib import Path

import pytest

from conftest import ROOT, run_cli
from studykit.runner.dryrun import plan
from studykit.weights.store import checkpoint
from studykit.params import load_study

ASCEND = ROOT / "params" / "bitcpm4-0.5b-ascend.yaml"
SEED = ROOT / "tests" / "data" / "ascend" / "seed-commands.sh"
MODEL_ID = "OpenBMB/BitCPM4-0.5B"


def seed_commands() -> tuple[dict[str, str], list[list[str]]]:
    env, cmds = {}, []
    for line in SEED.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("export "):
            k, v = line.removeprefix("export ").split("=", 1)
            env[k] = v
        else:
            cmds.append(shlex.split(line))
    return env, cmds


def flags(argv: list[str], start: int) -> dict[str, str | None]:
    """--flag value / --flag (boolean) pairs from argv[start:], in a dict. Fails on stray positionals."""
    out, i = {}, start
    while i < len(argv):
        a = argv[i]
        assert a.startswith("--"), f"unexpected positional {a!r} in {argv}"
        if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            out[a] = argv[i + 1]
            i += 2
        else:
            out[a] = None
            i += 1
    return out


# argparse accepts unambiguous prefixes; the seed used two.
ABBREVIATIONS = {"--random-input": "--random-input-len", "--random-output": "--random-output-len"}


def normalized(f: dict) -> dict:
    return {ABBREVIATIONS.get(k, k): v for k, v in f.items()}


@pytest.fixture(scope="module")
def ascend(tmp_path_factory):
    import os

    cache = tmp_path_factory.mktemp("cache")
    old = os.environ.get("STUDYKIT_CACHE")
    os.environ["STUDYKIT_CACHE"] = str(cache)
    try:
        study = load_study(ASCEND)
        env, steps = plan(study)
        model_dir = checkpoint(study).model_dir
    finally:
        if old is None:
            os.environ.pop("STUDYKIT_CACHE")
        else:
            os.environ["STUDYKIT_CACHE"] = old
    return study, env, steps, model_dir


def ours(steps, stage, kind=None, label=None):
    found = [s for s in steps if s.stage == stage and (kind is None or s.kind == kind)
             and (label is None or s.label == label)]
    assert found, f"no {stage}/{kind}/{label} step in the dry run"
    return found


def vllm_args(step) -> list[str]:
    argv = step.argv
    assert argv[1:3] == ["-m", "studykit.engine.launcher"], argv
    return argv[3:]


def test_environment_matches_seed(ascend):
    _, env, _, _ = ascend
    seed_env, _ = seed_commands()
    for k, v in seed_env.items():
        assert env.get(k) == v, (k, env)
    # Added on purpose: ModelScope as the only hub, the Hugging Face hub kept offline.
    assert set(env) - set(seed_env) == {"VLLM_USE_MODELSCOPE", "HF_HUB_OFFLINE"}


def test_modelscope_download_matches_seed(ascend):
    study, _, steps, model_dir = ascend
    seed = next(c for c in seed_commands()[1] if c[0] == "modelscope")
    step = ours(steps, "weights")[0]
    assert step.argv[:2] == seed[:2] == ["modelscope", "download"]
    mine, theirs = flags(step.argv, 2), flags(seed, 2)
    assert mine["--model"] == theirs["--model"] == MODEL_ID
    assert set(mine) - set(theirs) == {"--revision", "--local_dir"}
    assert mine["--revision"] == study.model.revision
    assert Path(mine["--local_dir"]) == model_dir
    assert model_dir.parts[-3:] == ("OpenBMB", "BitCPM4-0.5B", study.model.revision)


def test_vllm_serve_matches_seed(ascend):
    _, _, steps, model_dir = ascend
    seed = next(c for c in seed_commands()[1] if c[:2] == ["vllm", "serve"])
    real_gate = ours(steps, "deploy", "server", "real-gate")[0]
    args = vllm_args(real_gate)
    assert args[0] == "serve" and seed[2] == MODEL_ID and Path(args[1]) == model_dir
    mine, theirs = flags(args, 2), flags(seed, 3)
    for k, v in theirs.items():
        assert k in mine and mine[k] == v, (k, v, mine)
    assert {k: mine[k] for k in set(mine) - set(theirs)} == {"--served-model-name": MODEL_ID, "--host": "127.0.0.1"}
    assert "--enforce-eager" not in mine  # graph mode, as in the seed
    # Every server the study starts is the same command (plus --load-format dummy / --enforce-eager on purpose).
    for step in (s for s in steps if s.kind == "server"):
        extra = set(flags(vllm_args(step), 2)) - set(mine)
        # functional adds a per-step token budget for its chunked-prefill check (its own server)
        # the profile stage adds vLLM's profiler (its own server)
        allowed = {"--load-format", "--enforce-eager"} | ({"--max-num-batched-tokens"} if step.stage == "functional" else set())
        allowed |= {"--profiler-config"} if step.stage == "profile" else set()
        assert extra <= allowed, (step.label, extra)


def test_smoke_chat_matches_seed(ascend):
    _, _, steps, _ = ascend
    seed = next(c for c in seed_commands()[1] if c[0] == "curl")
    step = ours(steps, "deploy", "http", "smoke chat")[0]
    argv = shlex.split(step.command)
    assert argv[1].endswith("/v1/chat/completions") and seed[1].endswith("/v1/chat/completions")
    assert argv[1] == "http://127.0.0.1:8000/v1/chat/completions"  # seed: localhost:8000, same server
    assert json.loads(argv[argv.index("-d") + 1]) == json.loads(seed[seed.index("-d") + 1])


def test_bench_latency_matches_seed(ascend):
    _, _, steps, model_dir = ascend
    seed = next(c for c in seed_commands()[1] if c[:3] == ["vllm", "bench", "latency"])
    args = vllm_args(ours(steps, "latency", "command")[0])
    assert args[:2] == ["bench", "latency"]
    mine, theirs = flags(args, 2), flags(seed, 3)
    assert Path(mine.pop("--model")) == model_dir and theirs.pop("--model") == MODEL_ID
    for k, v in theirs.items():
        assert mine.get(k, "missing") == v, (k, v, mine)
    assert {k: mine[k] for k in set(mine) - set(theirs)} == {
        "--max-model-len": "32768", "--max-num-seqs": "16", "--num-iters-warmup": "10", "--num-iters": "30",
        "--output-json": "RUN_DIR/raw/latency/latency.json"}


def test_bench_throughput_differs_from_seed_only_in_dataset_lengths(ascend):
    _, _, steps, model_dir = ascend
    seed = next(c for c in seed_commands()[1] if c[:3] == ["vllm", "bench", "throughput"])
    args = vllm_args(ours(steps, "throughput", "command")[0])
    mine, theirs = flags(args, 2), flags(seed, 3)
    assert Path(mine.pop("--model")) == model_dir and theirs.pop("--model") == MODEL_ID
    # The seed's lengths, which vllm bench throughput ignored without --dataset-name random ...
    assert theirs.pop("--input-len") == "128" and theirs.pop("--output-len") == "128"
    assert "--input-len" not in mine and "--output-len" not in mine
    # ... go to the random dataset in ours.
    assert (mine.pop("--dataset-name"), mine.pop("--random-input-len"), mine.pop("--random-output-len")) == \
        ("random", "128", "128")
    for k, v in theirs.items():
        assert mine.get(k, "missing") == v, (k, v, mine)
    assert {k: mine[k] for k in set(mine) - set(theirs)} == {"--max-model-len": "32768", "--max-num-seqs": "16",
                                                                   "--output-json": "RUN_DIR/raw/throughput/throughput.json"}


def test_bench_serve_matches_seed(ascend):
    _, _, steps, model_dir = ascend
    seed = next(c for c in seed_commands()[1] if c[:3] == ["vllm", "bench", "serve"])
    benches = ours(steps, "serve", "command")
    assert len(benches) == 1  # one rate, one repeat, as in the seed
    mine, theirs = flags(vllm_args(benches[0]), 2), normalized(flags(seed, 3))
    assert theirs.pop("--base-url") == "http://localhost:8000" and mine.pop("--base-url") == "http://127.0.0.1:8000"
    for k, v in theirs.items():
        assert mine.get(k, "missing") == v, (k, v, mine)
    assert {k: mine[k] for k in set(mine) - set(theirs)} == {
        "--tokenizer": str(model_dir), "--trust-remote-code": None, "--num-warmups": "2", "--seed": "0",
        # where the kit keeps vLLM's own result file (per-request detail included) and which statistics it asks for
        "--save-result": None, "--save-detailed": None, "--result-dir": "RUN_DIR/raw/serve",
        "--result-filename": "rate-10-rep-1.json", "--percentile-metrics": "ttft,tpot,itl,e2el",
        "--metric-percentiles": "50,90,99"}
    # The server it measures is the deploy gate's, with the seed's flags, still up (one server, shared).
    serve_steps = [s for s in steps if s.stage == "serve"]
    assert serve_steps[0].kind == "shared" and "deploy/real-gate" in serve_steps[0].command
    assert serve_steps[1] is benches[0]


def test_dry_run_order_follows_stages_with_shared_server_users_back_to_back(ascend):
    study, _, steps, _ = ascend
    order = [s.stage for s in steps]
    assert order[0] == "weights"
    seen = list(dict.fromkeys(order))
    # the stages that use the deploy gate's server run right after deploy, then the rest in the seed's order
    # (profile after serve: its saturated window is serve's)
    sharing = [s for s in ("serve", "accuracy", "tasks") if s in study.stages]
    rest = [s for s in ("latency", "throughput", "profile", "functional") if s in study.stages]
    assert seen == ["weights", "deploy", *sharing, *rest, "report"]
    servers = [s for s in steps if s.kind == "server"]
    assert [(s.stage, s.label) for s in servers] == [("deploy", "dummy-gate"), ("deploy", "real-gate"),
                                                   ("profile", "profile-server"), ("functional", "functional"),
                                                   ("functional", "functional-eager")]


def test_cli_dry_run_prints_everything_and_starts_nothing(tmp_path, no_vllm_left):
    outputs, cache = tmp_path / "outputs", tmp_path / "cache"
    r = run_cli("run", str(ASCEND), "--dry-run", env={"STUDYKIT_OUTPUTS": str(outputs), "STUDYKIT_CACHE": str(cache)},
                timeout=120)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "export ASCEND_RT_VISIBLE_DEVICES=0" in out and "export VLLM_USE_MODELSCOPE=True" in out
    for needle in ("modelscope download --model OpenBMB/BitCPM4-0.5B", "vllm serve ", "/v1/chat/completions",
                   "vllm bench latency", "vllm bench throughput", "vllm bench serve"):
        assert needle in out, needle
    assert out.index("modelscope download") < out.index("vllm serve") < out.index("vllm bench serve") \
        < out.index("vllm bench latency") < out.index("vllm bench throughput")
    # Not an Ascend host: said, not fatal for a dry run.
    assert "not a usable Ascend host" in out
    assert not outputs.exists() and not cache.exists()  # nothing created, nothing downloaded or built


def test_dry_run_subset_of_stages(tmp_path):
    r = run_cli("run", str(ASCEND), "--dry-run", "--stages", "latency", env={"STUDYKIT_CACHE": str(tmp_path)},
                timeout=120)
    assert r.returncode == 0, r.stderr
    assert "vllm bench latency" in r.stdout and "vllm serve" not in r.stdout and "bench serve" not in r.stdout


def test_dry_run_shows_parallel_sizes_and_ascend_env(tmp_path):
    from conftest import tiny_study

    p = tiny_study(tmp_path, {
        "server": {"tensor_parallel_size": 2, "pipeline_parallel_size": 2, "data_parallel_size": 2,
                   "distributed_executor_backend": "ray"},
        "npu": {"visible_devices": "0,1,2,3,4,5,6,7", "pytorch_npu_alloc_conf": "expandable_segments:True",
                "task_queue_enable": "2", "hccl_env": {"HCCL_BUFFSIZE": "512", "HCCL_CONNECT_TIMEOUT": "1200"}},
        "stages": ["deploy"]}, base=ASCEND)
    r = run_cli("run", str(p), "--dry-run", env={"STUDYKIT_CACHE": str(tmp_path / "c")}, timeout=120)
    assert r.returncode == 0, r.stderr
    for line in ("export ASCEND_RT_VISIBLE_DEVICES=0,1,2,3,4,5,6,7", "export HCCL_BUFFSIZE=512",
                 "export HCCL_CONNECT_TIMEOUT=1200", "export PYTORCH_NPU_ALLOC_CONF=expandable_segments:True",
                 "export TASK_QUEUE_ENABLE=2"):
        assert line in r.stdout, line
    serve = next(l for l in r.stdout.splitlines() if l.startswith("vllm serve"))
    f = flags(shlex.split(serve), 3)
    assert (f["--tensor-parallel-size"], f["--pipeline-parallel-size"], f["--data-parallel-size"],
            f["--distributed-executor-backend"]) == ("2", "2", "2", "ray")


def test_dry_run_bad_params_exit_2(tmp_path):
    from conftest import tiny_study

    p = tiny_study(tmp_path, {"npu": {"hccl_env": {"ASCEND_LAUNCH_BLOCKING": "1"}}}, base=ASCEND)
    r = run_cli("run", str(p), "--dry-run", timeout=120)
    assert r.returncode == 2
    assert "npu.hccl_env" in r.stderr and "HCCL_*" in r.stderr and "ASCEND_LAUNCH_BLOCKING" in r.stderr
