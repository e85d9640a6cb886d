"""The faults the kit can inject, and the parsing of `STUDYKIT_FAULT=<name>[,key=value...]`.

Nothing here imports vLLM: the runner, the tests and the report read the catalog without an engine.
Each fault imitates a bug that was filed against vLLM or vllm-ascend; `imitates` holds the issue links.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

ENV_VAR = "STUDYKIT_FAULT"

# One line of this form goes into the log of every vLLM process that loads the plugin with a fault set.
LOG_MARKER = "studykit fault injection ACTIVE:"
_LOG_LINE = re.compile(re.escape(LOG_MARKER) + r" fault=(?P<name>[a-z0-9_]+) params=(?P<params>\S*)")


class FaultError(ValueError):
    """STUDYKIT_FAULT names a fault or a parameter the kit does not have, or a value it cannot use."""


@dataclass(frozen=True)
class Fault:
    name: str
    what: str               # the defect, in one sentence
    patched: str            # the vLLM function(s) replaced, for the report and the README
    imitates: tuple[str, ...]
    severity: str           # gross / medium / subtle / perf: what to expect on the default model
    params: dict[str, float] = field(default_factory=dict)  # name -> default


FAULTS: dict[str, Fault] = {f.name: f for f in [
    Fault("rope_style",
          "rotary embedding applied GPT-J style (interleaved pairs) to a NeoX-style model",
          "vllm.model_executor.layers.rotary_embedding.base.RotaryEmbedding.forward_cpu",
          ("https://github.com/vllm-project/vllm-ascend/issues/12765",
           "https://github.com/vllm-project/vllm-ascend/pull/7341"),
          "gross (9/9 prompts changed, KL 1.5)"),
    Fault("kv_stale",
          "KV-cache writes are dropped from position `after` on, so attention reads stale blocks there",
          "vllm.v1.attention.backends.cpu_attn.CPUAttentionBackendImpl.do_kv_cache_update",
          ("https://github.com/vllm-project/vllm/pull/38715",
           "https://github.com/tenstorrent/vllm/issues/415"),
          "gross once a sequence passes `after` (default model: 6/9 prompts changed, KL 0.36)", {"after": 32}),
    Fault("decode_mask",
          "decode-step attention mask off by one: the new token does not attend to its own key",
          "vllm.v1.attention.backends.cpu_attn.CPUAttentionMetadataBuilder.build (decode rows' seq_lens - 1)",
          ("https://github.com/vllm-project/vllm-ascend/pull/12605",
           "https://github.com/vllm-project/vllm-ascend/pull/11266"),
          "medium (9/9 prompts changed, KL 0.15); prefill (teacher-forced scoring) untouched"),
    Fault("rope_theta",
          "rotary base taken from a default instead of the model config's rope_theta",
          "vllm.model_executor.layers.rotary_embedding.base.RotaryEmbeddingBase._compute_inv_freq",
          ("https://github.com/vllm-project/vllm/issues/9490",),
          "medium, grows with position (8/9 prompts changed, KL 0.096)", {"base": 10000}),
    Fault("silu_mul_fp8",
          "fused SiLU-and-mul rounds its output through per-token fp8 (e4m3) before the down projection",
          "vllm.model_executor.layers.activation.SiluAndMul.forward_cpu",
          ("https://github.com/vllm-project/vllm/pull/24833",),
          "subtle (8/9 prompts changed late, KL 0.016)"),
    Fault("rmsnorm_lowp",
          "fused add+RMSNorm rounds the residual sum and computes the variance in the activation dtype (bf16)",
          "vllm.model_executor.layers.layernorm.RMSNorm.forward_native (reached through forward_cpu)",
          ("https://github.com/vllm-project/vllm/issues/52104",
           "https://github.com/vllm-project/vllm/issues/42325"),
          "subtle (5/9 prompts changed, KL 0.0083)"),
    Fault("sampler_second_choice",
          "greedy sampler picks the second-best token at a request's first step whose top probability is "
          "below `p` (logprobs untouched, prefill untouched)",
          "vllm.v1.sample.sampler.Sampler.sample (+ GPUModelRunner._sample to know the request ids)",
          ("https://github.com/vllm-project/vllm-ascend/issues/16396",),
          "subtle: one token per request, where the model is unsure; logprobs identical (KL 0)", {"p": 0.3}),
    Fault("decode_delay",
          "every decode step takes longer: sleeps `ms` milliseconds plus `frac` of the step's own time",
          "vllm.v1.worker.gpu_model_runner.GPUModelRunner.execute_model (decode-only steps)",
          ("https://github.com/vllm-project/vllm-ascend/pull/10302",
           "https://github.com/vllm-project/vllm-ascend/issues/16889"),
          "perf only; tokens unchanged", {"ms": 2.0, "frac": 0.0}),
]}


@dataclass(frozen=True)
class FaultSpec:
    fault: Fault
    params: dict[str, float]

    @property
    def name(self) -> str:
        return self.fault.name

    def log_line(self) -> str:
        params = ",".join(f"{k}={_fmt(v)}" for k, v in sorted(self.params.items()))
        return f"{LOG_MARKER} fault={self.name} params={params} imitates={' '.join(self.fault.imitates)}"


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def known() -> str:
    return ", ".join(sorted(FAULTS))


def parse(text: str | None) -> FaultSpec | None:
    """`name[,key=value...]` -> the fault with its parameters (defaults filled in); unset or blank -> None."""
    if text is None or not text.strip():
        return None
    name, *pairs = [part.strip() for part in text.split(",")]
    fault = FAULTS.get(name)
    if fault is None:
        raise FaultError(f"{ENV_VAR}={text!r}: unknown fault {name!r}; known faults: {known()}")
    params = {k: float(v) for k, v in fault.params.items()}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or key not in fault.params:
            allowed = ", ".join(f"{k}=<number>" for k in fault.params) or "none"
            raise FaultError(f"{ENV_VAR}={text!r}: fault {name!r} has no parameter {pair!r}; "
                             f"its parameters: {allowed}")
        try:
            params[key] = float(value)
        except ValueError:
            raise FaultError(f"{ENV_VAR}={text!r}: {key}={value!r} is not a number") from None
    _check_ranges(text, fault.name, params)
    return FaultSpec(fault, params)


def _check_ranges(text: str, name: str, params: dict[str, float]) -> None:
    bad = []
    if name == "sampler_second_choice" and not 0 < params["p"] <= 1:
        bad.append(f"p={params['p']} (must be in (0, 1])")
    if name == "kv_stale" and (params["after"] < 0 or not params["after"].is_integer()):
        bad.append(f"after={params['after']} (must be a whole position >= 0)")
    if name == "rope_theta" and params["base"] <= 1:
        bad.append(f"base={params['base']} (must be > 1)")
    if name == "decode_delay" and (params["ms"] < 0 or params["frac"] < 0 or params["ms"] + params["frac"] == 0):
        bad.append(f"ms={params['ms']}, frac={params['frac']} (both >= 0, not both 0)")
    if bad:
        raise FaultError(f"{ENV_VAR}={text!r}: " + "; ".join(bad))


def faults_in_log(text: str) -> list[tuple[str, dict[str, float]]]:
    """The (fault, params) each ACTIVE line of a vLLM log names, one per process that loaded the plugin."""
    found = []
    for m in _LOG_LINE.finditer(text):
        params = {}
        for pair in filter(None, m["params"].split(",")):
            k, _, v = pair.partition("=")
            params[k] = float(v)
        found.append((m["name"], params))
    return found
