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
from pydantic import Field, ValidationError, create_model, field_validator, model_validator

from studykit import stages
from studykit.schema.base import Strict, no_repeats
from studykit.stages import DEFAULT_STAGES, OPT_IN, STAGE_ORDER

BUILTIN_MODELS = ("smollm2-135m-instruct", "minicpm-tiny")


class ParamsError(Exception):
    """Bad study definition. The message names the key path and what is allowed."""


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

    @property
    def world_size(self) -> int:
        """Engine ranks: tensor x pipeline x data parallel (one device, or on CPU one core set, each)."""
        return self.tensor_parallel_size * self.pipeline_parallel_size * self.data_parallel_size

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


class StudyCore(Strict):
    """The blocks every study has; `Study` adds one block per registered stage (studykit.stages)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="study name; names the outputs folder")
    platform: Literal["cpu", "npu"] = Field(description="where vLLM runs")
    model: ModelParams
    server: ServerParams = Field(default_factory=ServerParams)
    cpu: CpuParams = Field(default_factory=CpuParams)
    npu: NpuParams = Field(default_factory=NpuParams)
    stages: list[Literal[STAGE_ORDER]] = Field(default_factory=lambda: list(DEFAULT_STAGES),
                                               description="stages to run, in order; default every stage but the "
                                                           f"opt-in ones ({', '.join(OPT_IN)})")

    _stages_unique = field_validator("stages")(lambda v: no_repeats(v, "stages"))

    @model_validator(mode="after")
    def _ray_needs_npu(self) -> "StudyCore":
        # Refused here rather than discovered after an engine start: vllm-cpu stops with
        # "current platform cpu does not support ray" (measured with vllm-cpu 0.32.0, ray 2.60.0 installed).
        if self.ray is not None:
            s = self.server
            world = s.world_size
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
    def _threads_bind_one_set_per_rank(self) -> "StudyCore":
        bind = self.cpu.omp_threads_bind
        s = self.server
        ranks = s.world_size
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


def _compose_study() -> type[StudyCore]:
    """One field per registered stage, its default the stage's defaults; `ray` last, as the files write it."""
    fields: dict[str, Any] = {name: (stages.params_model(name), Field(default_factory=stages.params_model(name)))
                              for name in STAGE_ORDER}
    fields["ray"] = (RayParams | None, Field(None, description="the Ray cluster, for distributed_executor_backend "
                                                                 "ray on npu"))
    return create_model("Study", __base__=StudyCore, **fields)


Study = _compose_study()


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
