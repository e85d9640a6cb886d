"""The lm-evaluation-harness invocations and what they leave behind.

Both backends run the same `lm_eval run` command line except for the model: `hf` (transformers, on CPU, the
reference dtype) and `local-completions` against the study's `vllm serve`. Both send token ids built by the
same tokenizer with the same special-token rule and the same max_length, so a difference in scores is a
difference in the engines, not in the inputs. The BOS rule needs care: lm-eval's `hf` model with
add_bos_token=True prepends the BOS id itself (SmolLM2 then sees <|im_start|> first, shifting every
log-likelihood by about a nat), while `local-completions` with add_bos_token=True asks the tokenizer for its
default special tokens. So `hf` gets no add_bos_token (tokenizer default) and `local-completions` gets True
(tokenizer default): the same ids on both sides, BOS where the tokenizer adds one (Llama-style), none where not.
`plan` builds the steps once: the notebook runs them and the dry run prints them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from studykit.params import Study
from studykit.evidence.rundir import RunLayout

STAGE = "tasks"
BACKENDS = ("reference", "vllm")
# No hub access inside the stage: datasets are local files, the model a local directory.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false"}
DEFAULT_MAX_LENGTH = 2048
SERVER_LABEL = "tasks"


def lm_eval_version() -> str:
    from importlib.metadata import version

    return version("lm_eval")


def task_dir(run_dir: str | Path) -> Path:
    """The one --include_path lm-eval gets: copies of every task definition the run used (kept with the run)."""
    return RunLayout(run_dir).raw_dir(STAGE) / "taskdefs"


def output_dir(run_dir: str | Path, backend: str) -> Path:
    return RunLayout(run_dir).raw_dir(STAGE) / backend


def _common_args(study: Study, run_dir: str | Path, backend: str) -> list[str]:
    p = study.tasks
    args = ["--tasks", ",".join(p.tasks), "--include_path", str(task_dir(run_dir)),
            "--batch_size", str(p.batch_size), "--seed", "0", "--log_samples",
            "--output_path", str(output_dir(run_dir, backend))]
    if p.limit is not None:
        args += ["--limit", str(p.limit)]
    if p.num_fewshot is not None:
        args += ["--num_fewshot", str(p.num_fewshot)]
    if p.max_gen_toks is not None:
        args += ["--gen_kwargs", f"max_gen_toks={p.max_gen_toks}"]
    return args


def _model_args(pairs: dict[str, object]) -> str:
    return ",".join(f"{k}={v}" for k, v in pairs.items())


def reference_argv(study: Study, model_dir: Path, run_dir: str | Path) -> list[str]:
    p = study.tasks
    pairs = {"pretrained": model_dir, "dtype": p.reference_dtype,
             "max_length": study.model.max_model_len or DEFAULT_MAX_LENGTH}
    if study.model.trust_remote_code:
        pairs["trust_remote_code"] = True
    return [sys.executable, "-m", "lm_eval", "run", "--model", "hf", "--model_args", _model_args(pairs),
            "--device", "cpu", *_common_args(study, run_dir, "reference")]


def vllm_argv(study: Study, model_dir: Path, run_dir: str | Path, base_url: str) -> list[str]:
    p = study.tasks
    pairs = {"model": study.model.name_served, "base_url": base_url.rstrip("/") + "/v1/completions",
             "tokenizer": model_dir, "tokenizer_backend": "huggingface", "tokenized_requests": True,
             "add_bos_token": True, "max_length": study.model.max_model_len or DEFAULT_MAX_LENGTH,
             "num_concurrent": p.num_concurrent, "max_retries": 3, "timeout": 600}
    if study.model.trust_remote_code:
        pairs["trust_remote_code"] = True
    return [sys.executable, "-m", "lm_eval", "run", "--model", "local-completions", "--model_args",
            _model_args(pairs), *_common_args(study, run_dir, "vllm")]


# --- what lm-eval wrote ------------------------------------------------------------------------------------------


def _newest(paths: list[Path]) -> Path | None:
    return max(paths, key=lambda q: q.stat().st_mtime) if paths else None


def read_results(backend_dir: Path) -> dict:
    """lm-eval's results_<date>.json of one run (the newest if there are several)."""
    path = _newest(list(backend_dir.rglob("results_*.json")))
    if path is None:
        raise FileNotFoundError(f"lm-eval wrote no results_*.json under {backend_dir}")
    data = json.loads(path.read_text(encoding="utf-8"))
    data["_path"] = str(path)
    return data


def sample_files(backend_dir: Path) -> dict[str, Path]:
    """{task: samples_<task>_<date>.jsonl}; a task's name may itself hold underscores, so match on the date."""
    out: dict[str, Path] = {}
    for path in sorted(backend_dir.rglob("samples_*.jsonl"), key=lambda q: q.stat().st_mtime):
        task = path.stem[len("samples_"):].rsplit("_", 1)[0]
        out[task] = path
    return out


def read_samples(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
