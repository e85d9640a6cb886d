"""The study schema: one YAML file defines a whole study, checked before anything starts.

Every field carries a description; the stage notebooks' parameter cells mirror the stage blocks
(names and defaults), and a test keeps the two in step.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

STAGE_ORDER = ("deploy", "latency", "throughput", "serve", "accuracy", "tasks", "functional", "report")
StageName = Literal["deploy", "latency", "throughput", "serve", "accuracy", "tasks", "functional", "report"]
BUILTIN_MODELS = ("smollm2-135m-instruct", "minicpm-tiny")


class ParamsError(Exception):
    """Bad study definition. The message names the key path and what is allowed."""


def _no_repeats(values: list, what: str) -> list:
    dupes = sorted({x for x in values if values.count(x) > 1})
    if dupes:
        raise ValueError(f"{what} listed twice: {dupes}")
    return values


class Strict(BaseModel):
    # inf is a valid value (serve.request_rates): the JSON that papermill injects and params.yaml is written from
    # keeps it as "Infinity" (null would lose it); the setting of the model being dumped is the one that counts
    model_config = ConfigDict(extra="forbid", validate_default=True, ser_json_inf_nan="strings")


PositiveInt = Field(gt=0)

# A pinned ModelScope revision names one fixed set of files: a commit id (7-40 hex digits, as ModelScope's
# Files tab shows it) or a version-like tag (v1.0, 1.2.3, v2-rc1). Anything else (master, main, HEAD, dev, a
# feature branch) is a branch, whose files can change under the study between two runs.
COMMIT_ID = re.compile(r"[0-9a-fA-F]{7,40}")
VERSION_TAG = re.compile(r"v?\d+(\.\d+)*([-+][0-9A-Za-z][0-9A-Za-z.-]*)?")
PINNED_REVISION_RULE = "a commit id (7-40 hex digits) or a version tag such as v1.0 or 1.2.3"


def is_pinned_revision(revision: str) -> bool:
    return bool(COMMIT_ID.fullmatch(revision) or VERSION_TAG.fullmatch(revision))


class ModelParams(Strict):
    source: Literal["local", "modelscope", "builtin"] = Field(
        description="where weights come from: a local directory, ModelScope (id + pinned revision), or a model the kit builds")
    id: str = Field(min_length=1, description="ModelScope model id, builtin name, or a label for a local model")
    revision: str | None = Field(None, description=f"ModelScope revision, required for source modelscope: "
                                                   f"{PINNED_REVISION_RULE}")
    allow_unpinned_revision: bool = Field(
        False, description="accept a branch name (e.g. master) as model.revision; the files may then change between runs")
    path: Path | None = Field(None, description="checkpoint directory; required for source local")
    served_model_name: str | None = Field(None, description="name the server answers to; defaults to id")
    trust_remote_code: bool = Field(False, description="pass --trust-remote-code (needed when config.json has auto_map)")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field("auto", description="serving dtype (--dtype)")
    max_model_len: int | None = Field(None, gt=0, description="--max-model-len")
    max_num_seqs: int | None = Field(None, gt=0, description="--max-num-seqs")
    load_format: Literal["auto", "safetensors", "pt", "dummy"] = Field("auto", description="--load-format for real-weight runs")

    @model_validator(mode="after")
    def _source_needs(self) -> "ModelParams":
        if self.source == "local":
            if self.path is None:
                raise ValueError("source 'local' needs model.path (a checkpoint directory)")
            if not Path(self.path).is_dir():
                raise ValueError(f"model.path {str(self.path)!r} is not an existing directory")
        if self.source == "modelscope" and not self.revision:
            raise ValueError(f"source 'modelscope' needs model.revision pinned ({PINNED_REVISION_RULE})")
        if self.source == "modelscope" and not self.allow_unpinned_revision and not is_pinned_revision(self.revision):
            raise ValueError(f"model.revision {self.revision!r} looks like a branch, not a pinned revision; "
                             f"allowed: {PINNED_REVISION_RULE}, or set model.allow_unpinned_revision: true")
        if self.source == "builtin" and self.id not in BUILTIN_MODELS:
            raise ValueError(f"builtin model {self.id!r} is unknown; allowed: {', '.join(BUILTIN_MODELS)}")
        return self

    @property
    def name_served(self) -> str:
        return self.served_model_name or self.id


class ServerParams(Strict):
    host: str = Field("127.0.0.1", description="address vllm serve binds to")
    port: Union[int, Literal["auto"]] = Field("auto", description="TCP port, or 'auto' for a free one")
    ready_timeout_s: float = Field(600.0, gt=0, description="seconds to wait for /health before giving up")
    enforce_eager: bool | None = Field(None, description="--enforce-eager; default: true on cpu, false (graph mode) on npu")
    max_num_batched_tokens: int | None = Field(None, gt=0, description="--max-num-batched-tokens")
    enable_prefix_caching: bool | None = Field(None, description="force prefix caching on/off; default: vLLM's own")
    enable_chunked_prefill: bool | None = Field(None, description="force chunked prefill on/off; default: vLLM's own")
    tensor_parallel_size: int = Field(1, gt=0, description="--tensor-parallel-size")
    pipeline_parallel_size: int = Field(1, gt=0, description="--pipeline-parallel-size")
    data_parallel_size: int = Field(1, gt=0, description="--data-parallel-size")
    distributed_executor_backend: Literal["mp", "ray"] | None = Field(None, description="--distributed-executor-backend")
    extra_args: list[str] = Field(default_factory=list, description="more vllm serve arguments, verbatim")
    env: dict[str, str] = Field(default_factory=dict, description="extra environment variables for vllm processes")
    share: bool = Field(True, description="one server per distinct serve command in a run (stages with identical "
                                          "flags use it in turn); false: every stage starts its own")

    @field_validator("port")
    @classmethod
    def _port_range(cls, v):
        if isinstance(v, int) and not 1 <= v <= 65535:
            raise ValueError(f"port {v} is out of range; allowed: 1..65535 or 'auto'")
        return v


class CpuParams(Strict):
    kvcache_space_gib: int = Field(2, gt=0, description="VLLM_CPU_KVCACHE_SPACE: GiB of KV cache on CPU")
    memory_bandwidth_gbps: float | None = Field(None, gt=0, description="override the copy-bandwidth probe (GB/s)")
    omp_threads_bind: str | None = Field(
        None, pattern=r"^(auto|\d+(-\d+)?(,\d+(-\d+)?)*(\|\d+(-\d+)?(,\d+(-\d+)?)*)*)$",
        description="VLLM_CPU_OMP_THREADS_BIND: one core set per rank (tensor x pipeline x data parallel, in "
                    "vLLM's DP, PP, TP order) joined by '|', e.g. '0|1' or '0-3|4-7', or 'auto' for vLLM's own "
                    "binding (one NUMA node per rank, one core per rank kept for the scheduler); default: every "
                    "physical core this process may use, split evenly over the ranks")


class NpuParams(Strict):
    visible_devices: str = Field("0", pattern=r"^\d+(,\d+)*$", description="ASCEND_RT_VISIBLE_DEVICES")
    hbm_bandwidth_gbps: float = Field(1600.0, gt=0, description="HBM bandwidth of one card (GB/s), for the roofline")
    pytorch_npu_alloc_conf: str | None = Field(None, description="PYTORCH_NPU_ALLOC_CONF")
    task_queue_enable: str | None = Field(None, description="TASK_QUEUE_ENABLE")
    hccl_env: dict[str, str] = Field(default_factory=dict,
                                     description="HCCL_* variables for multi-card runs, e.g. HCCL_BUFFSIZE, HCCL_CONNECT_TIMEOUT")

    @property
    def device_ids(self) -> list[int]:
        return [int(x) for x in self.visible_devices.split(",")]

    @field_validator("hccl_env")
    @classmethod
    def _hccl_names(cls, v):
        bad = sorted(k for k in v if not k.startswith("HCCL_"))
        if bad:
            raise ValueError(f"npu.hccl_env takes HCCL_* variables only; got {bad} (use server.env for others)")
        return v


class RayNode(Strict):
    ip: str = Field(min_length=1, description="the node's address on the cluster network (HCCL_IF_IP on that node)")
    devices: str = Field("0,1,2,3,4,5,6,7", pattern=r"^\d+(,\d+)*$",
                         description="ASCEND_RT_VISIBLE_DEVICES on that node")


class RayParams(Strict):
    """A multi-node Ray cluster for server.distributed_executor_backend ray (vllm-ascend's Ray tutorial): the dry run
    prints each node's exports and `ray start`; the preflight checks `ray status` before vLLM starts."""

    nodes: list[RayNode] = Field(min_length=1, description="every node of the cluster, the head first")
    port: int = Field(6379, gt=0, le=65535, description="the head's GCS port (ray start --head --port)")
    nic_name: str = Field(min_length=1, description="network interface for GLOO_SOCKET_IFNAME / TP_SOCKET_IFNAME")

    @property
    def devices(self) -> int:
        return sum(len(n.devices.split(",")) for n in self.nodes)


class DeployParams(Strict):
    dummy_gate: bool = Field(True, description="start once with --load-format dummy and time it")
    real_gate: bool = Field(True, description="start with the real weights and time it")
    smoke_prompt: str = Field("say hi", min_length=1, description="user message of the smoke chat request")
    max_completion_tokens: int = Field(16, gt=0, description="max_completion_tokens of the smoke chat")


class LatencyParams(Strict):
    input_len: int = Field(32, gt=0, description="prompt tokens per request (--input-len)")
    output_len: int = Field(32, gt=1, description="generated tokens per request (--output-len); > 1 to derive decode time")
    batch_size: int = Field(1, gt=0, description="--batch-size")
    num_iters_warmup: int = Field(2, ge=0, description="--num-iters-warmup")
    num_iters: int = Field(5, gt=0, description="--num-iters")
    extra_args: list[str] = Field(default_factory=list, description="more vllm bench latency arguments")


class ThroughputParams(Strict):
    input_len: int = Field(32, gt=0, description="--random-input-len")
    output_len: int = Field(32, gt=0, description="--random-output-len")
    num_prompts: int = Field(20, gt=0, description="--num-prompts")
    extra_args: list[str] = Field(default_factory=list, description="more vllm bench throughput arguments")


class GoodputSlo(Strict):
    ttft_ms: float | None = Field(None, gt=0, description="TTFT SLO in ms")
    tpot_ms: float | None = Field(None, gt=0, description="TPOT SLO in ms")


class ServeParams(Strict):
    # inf is a valid rate: serialise it as "Infinity" (papermill injects JSON values; null would lose it)
    model_config = ConfigDict(extra="forbid", validate_default=True, ser_json_inf_nan="strings")

    base_url: str | None = Field(None, description="bench an existing server instead of starting one")
    input_len: int = Field(32, gt=0, description="--random-input-len")
    output_len: int = Field(32, gt=0, description="--random-output-len")
    num_prompts: int = Field(20, gt=0, description="--num-prompts per point")
    request_rates: list[float] | Literal["auto"] = Field(
        default_factory=lambda: [10.0], min_length=1,
        description="--request-rate per point (inf allowed: all at once); 'auto': the synchronous point "
                    "(max_concurrency 1) and the saturated point (rate inf), then sweep_rates rates spread between "
                    "their request throughputs, as GuideLLM's sweep does")
    sweep_rates: int = Field(3, ge=1, le=20, description="with request_rates auto: rates measured between the "
                                                          "synchronous and the saturated throughput")
    max_concurrency: list[int] = Field(default_factory=list, description="--max-concurrency per point (crossed with rates)")
    repeats: int = Field(1, gt=0, description="runs per point, for confidence intervals")
    num_warmups: int = Field(2, ge=0, description="--num-warmups: warm-up requests before each point (not measured)")
    goodput: GoodputSlo | None = Field(None, description="SLOs for goodput")
    seed: int = Field(0, description="--seed of the random dataset")
    extra_args: list[str] = Field(default_factory=list, description="more vllm bench serve arguments")

    @field_validator("request_rates")
    @classmethod
    def _rates_positive(cls, v):
        if v == "auto":
            return v
        bad = [r for r in v if not r > 0]
        if bad:
            raise ValueError(f"request rates must be > 0 (or inf); got {bad}")
        return v


class AccuracyParams(Strict):
    prompts_file: str = Field("builtin:default", description="JSONL prompt file or 'builtin:default'")
    max_new_tokens: int = Field(16, gt=0, description="tokens generated per prompt")
    top_k_logprobs: int = Field(20, gt=0, description="logprobs returned per position")
    reference_dtype: Literal["float32", "bfloat16"] = Field("float32", description="dtype of the transformers reference")
    min_token_agreement: float = Field(
        0.9, ge=0, le=1, description="threshold on the free-running token agreement up to each prompt's first real "
                                     "divergence (near ties excluded); the raw agreement is reported, not gated")
    near_tie_margin: float = Field(
        0.25, ge=0, le=1,
        description="a free-running divergence is a near tie when the reference's p(own token) - p(vLLM's token) "
                    "is at most this. Default from measured bf16-vs-fp32 noise: on the default study (SmolLM2-135M, "
                    "9 prompts x 16 tokens, teacher-forced) vLLM bf16 moved a probability by up to 0.116 (p99 "
                    "0.056) and the reference's top-2 margin by up to 0.231 (p99 0.106). vLLM flips two tokens "
                    "when the margin is below the shift, and a shift can reach twice the largest probability "
                    "error (one token up, the other down), so margins up to 0.23 cannot be told apart from bf16 "
                    "rounding; 0.25 is that, rounded up. Each run reports its own teacher_forced.max_margin_shift "
                    "to compare with")
    min_top1_agreement: float = Field(0.95, ge=0, le=1, description="teacher-forced top-1 agreement threshold")
    max_mean_kl: float = Field(0.05, ge=0, description="teacher-forced mean KL threshold (nats)")


class TaskDataset(Strict):
    """A dataset an lm-eval task reads from the hub, fetched from ModelScope instead (`studykit data fetch`)."""

    dataset_path: str = Field(min_length=1, description="the task's dataset_path in lm-eval (e.g. openai/gsm8k)")
    modelscope_id: str = Field(pattern=r"^[A-Za-z0-9][\w.\-]*/[A-Za-z0-9][\w.\-]*$",
                               description="ModelScope dataset id (owner/name) holding the same files")
    revision: str = Field(pattern=r"^[A-Za-z0-9][\w.\-]*$", description="ModelScope revision (commit id or tag), pinned")


class TasksParams(Strict):
    tasks: list[str] = Field(default_factory=lambda: ["studykit_mc", "studykit_gen"], min_length=1,
                             description="lm-eval task or group names (the kit's offline tasks by default)")
    limit: int | None = Field(None, gt=0, description="items per task (lm-eval --limit); empty: all")
    num_fewshot: int | None = Field(None, ge=0, description="lm-eval --num_fewshot; empty: the task's own")
    max_gen_toks: int | None = Field(None, gt=0, description="cap on generated tokens per item; empty: the task's own")
    batch_size: int = Field(16, gt=0, description="lm-eval --batch_size for both backends")
    num_concurrent: int = Field(2, gt=0, description="concurrent requests lm-eval sends to the vLLM server")
    reference_dtype: Literal["float32", "bfloat16"] = Field("float32", description="dtype of the transformers reference (lm-eval hf)")
    metrics: dict[str, str] = Field(default_factory=dict,
                                    description="task -> 'metric,filter' to compare (default: the task's first)")
    max_abs_delta: float = Field(0.05, ge=0, le=1, description="fail when |vLLM score - reference score| exceeds this")
    rtol: float = Field(0.05, ge=0, description="vllm-ascend's tolerance: |vLLM score - baseline| <= rtol * baseline")
    baselines: dict[str, float] = Field(default_factory=dict,
                                        description="task -> recorded baseline score (0..1) of vLLM on this model")
    include_path: list[str] = Field(default_factory=list, description="more lm-eval task directories (YAML)")
    data_dir: str | None = Field(None, min_length=1,
                                 description="local dataset directory for hub tasks (filled by `studykit data fetch`)")
    datasets: list[TaskDataset] = Field(default_factory=list,
                                        description="hub datasets the tasks read, fetched from ModelScope into data_dir")

    _tasks_unique = field_validator("tasks")(lambda v: _no_repeats(v, "tasks"))

    @field_validator("baselines")
    @classmethod
    def _baselines_are_scores(cls, v):
        bad = {k: x for k, x in v.items() if not 0 <= x <= 1}
        if bad:
            raise ValueError(f"baseline scores must be within 0..1; got {bad}")
        return v

    @field_validator("metrics")
    @classmethod
    def _metric_filter_pairs(cls, v):
        bad = {k: x for k, x in v.items() if x.count(",") != 1 or not all(x.split(","))}
        if bad:
            raise ValueError(f"metrics are 'metric,filter' (e.g. 'acc,none', 'exact_match,strict-match'); got {bad}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> TasksParams:
        if self.datasets and not self.data_dir:
            raise ValueError("tasks.datasets needs tasks.data_dir (where `studykit data fetch` puts them)")
        strays = sorted((set(self.metrics) | set(self.baselines)) - set(self.tasks))
        if strays:
            raise ValueError(f"metrics / baselines name {strays}, which are not in tasks {self.tasks}")
        return self


class FunctionalParams(Strict):
    prefix_tokens: int = Field(256, gt=0, description="length of the shared prefix for the prefix-cache check")
    prefix_requests: int = Field(4, gt=1, description="requests sharing the prefix")
    graph_vs_eager: bool = Field(False, description="compare graph and eager servers (slow on cpu)")
    max_num_batched_tokens: int = Field(256, gt=0, description="token budget per step for the chunked-prefill check")


class ReportParams(Strict):
    reference: str | None = Field(
        None, min_length=1,
        description="previous run directory or reference file (.yaml/.json, e.g. params/reference/"
                    "seed-bitcpm4-0.5b-ascend.yaml) to compare with; absolute, or relative to the working "
                    "directory or the kit root")
    languages: list[Literal["zh", "en"]] = Field(default_factory=lambda: ["zh", "en"], min_length=1,
                                                 description="report languages (report.<lang>.md each; all in report.html)")

    _languages_unique = field_validator("languages")(lambda v: _no_repeats(v, "languages"))


class Study(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="study name; names the outputs folder")
    platform: Literal["cpu", "npu"] = Field(description="where vLLM runs")
    model: ModelParams
    server: ServerParams = Field(default_factory=ServerParams)
    cpu: CpuParams = Field(default_factory=CpuParams)
    npu: NpuParams = Field(default_factory=NpuParams)
    stages: list[StageName] = Field(default_factory=lambda: list(STAGE_ORDER), description="stages to run, in order")
    deploy: DeployParams = Field(default_factory=DeployParams)
    latency: LatencyParams = Field(default_factory=LatencyParams)
    throughput: ThroughputParams = Field(default_factory=ThroughputParams)
    serve: ServeParams = Field(default_factory=ServeParams)
    accuracy: AccuracyParams = Field(default_factory=AccuracyParams)
    tasks: TasksParams = Field(default_factory=TasksParams)
    functional: FunctionalParams = Field(default_factory=FunctionalParams)
    report: ReportParams = Field(default_factory=ReportParams)
    ray: RayParams | None = Field(None, description="the Ray cluster, for distributed_executor_backend ray on npu")

    _stages_unique = field_validator("stages")(lambda v: _no_repeats(v, "stages"))

    @model_validator(mode="after")
    def _ray_needs_npu(self) -> "Study":
        # Refused here rather than discovered after an engine start: vllm-cpu stops with
        # "current platform cpu does not support ray" (measured with vllm-cpu 0.32.0, ray 2.60.0 installed).
        if self.ray is not None:
            s = self.server
            world = s.tensor_parallel_size * s.pipeline_parallel_size * s.data_parallel_size
            if s.distributed_executor_backend != "ray":
                raise ValueError("ray: a Ray cluster is given but server.distributed_executor_backend is "
                                 f"{s.distributed_executor_backend!r}; allowed with a ray block: 'ray'")
            if self.ray.devices < world:
                raise ValueError(f"ray.nodes: {len(self.ray.nodes)} nodes give {self.ray.devices} NPUs, fewer than "
                                 f"tensor x pipeline x data parallel = {world}")
        if self.platform == "cpu" and self.server.distributed_executor_backend == "ray":
            raise ValueError("server.distributed_executor_backend 'ray' is not supported with platform 'cpu' "
                             "(vLLM refuses: current platform cpu does not support ray); allowed on cpu: 'mp' or unset")
        return self

    @model_validator(mode="after")
    def _threads_bind_one_set_per_rank(self) -> "Study":
        bind = self.cpu.omp_threads_bind
        s = self.server
        ranks = s.tensor_parallel_size * s.pipeline_parallel_size * s.data_parallel_size
        if bind and bind != "auto" and len(bind.split("|")) != ranks:
            raise ValueError(f"cpu.omp_threads_bind {bind!r} has {len(bind.split('|'))} core sets; allowed: exactly "
                             f"one per rank, tensor x pipeline x data parallel size = {ranks}")
        return self

    @property
    def enforce_eager(self) -> bool:
        if self.server.enforce_eager is not None:
            return self.server.enforce_eager
        return self.platform == "cpu"

    def stage_params(self, stage: str) -> dict[str, Any]:
        """Plain values papermill injects into a stage notebook."""
        block = getattr(self, stage)
        return json.loads(block.model_dump_json())


def _key_path(loc: tuple) -> str:
    parts = []
    for p in loc:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        elif p in ("function-after", "function-before") or "[" in str(p):
            continue
        else:
            parts.append(("." if parts else "") + str(p))
    return "".join(parts) or "(top level)"


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid study definition"]
    for e in err.errors():
        loc = _key_path(tuple(x for x in e["loc"] if x not in ("int", "constrained-str", "literal['auto']")))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not part of the schema)"
        got = e.get("input")
        got_s = "" if e["type"] in ("missing",) or isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"  {loc}: {msg}{got_s}")
    return "\n".join(lines)


def parse_study(data: Any, source: str = "<params>") -> Study:
    if not isinstance(data, dict):
        raise ParamsError(f"{source}: a study is a YAML mapping, got {type(data).__name__}")
    try:
        return Study.model_validate(data)
    except ValidationError as err:
        raise ParamsError(format_validation_error(err, source)) from None


def load_study(path: str | Path) -> Study:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    if isinstance(data, dict):
        resolve_paths(data, path.parent)
    return parse_study(data, str(path))


def resolve_paths(data: dict, base: Path) -> None:
    """Relative paths mean relative to the params file, so a study is portable with its folder."""
    def resolved(value) -> str:
        p = Path(str(value)).expanduser()
        return str(p if p.is_absolute() else (base / p).resolve())

    model, accuracy, report = (data.get(k) if isinstance(data.get(k), dict) else {} for k in
                               ("model", "accuracy", "report"))
    if model.get("path"):
        model["path"] = resolved(model["path"])
    prompts = accuracy.get("prompts_file")
    if isinstance(prompts, str) and prompts and not prompts.startswith("builtin:"):
        accuracy["prompts_file"] = resolved(prompts)
    reference = report.get("reference")
    # report.reference predates this rule and was documented as relative to the working directory or the kit
    # root: a path that exists beside the params file wins, otherwise the report's loader looks there as before.
    if isinstance(reference, str) and reference and (base / Path(reference).expanduser()).exists():
        report["reference"] = resolved(reference)


def study_hash(study: Study) -> str:
    return hashlib.sha256(study.model_dump_json().encode()).hexdigest()


def dump_study(study: Study) -> str:
    return yaml.safe_dump(json.loads(study.model_dump_json()), sort_keys=False, allow_unicode=True)
