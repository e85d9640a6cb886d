# Written for studykit (Apache-2.0). Shipped inside the kit's tiny MiniCPM checkpoint and named by config.json's
# `auto_map` (AutoModelForCausalLM), so `AutoModelForCausalLM.from_pretrained(..., trust_remote_code=True)` runs
# this file: the accuracy stage's fp32 reference for the MiniCPM architecture, as the seed report's parity test
# used the model's own transformers code.
#
# Written from the architecture's public description (MiniCPM: a Llama-shaped decoder with muP-style scales and
# LongRoPE), independently of vLLM's implementation: the point of a reference is that a mistake in one of the
# two shows up as a parity failure. Plain PyTorch plus transformers' PreTrainedModel / DynamicCache, which exist
# with the same meaning in transformers 4.x (the Ascend host's stack) and 5.x (this kit's CPU stack).
"""MiniCPM causal language model: embeddings times scale_emb, residual branches times
scale_depth / sqrt(num_hidden_layers), final hidden state divided by hidden_size / dim_model_base before the
(tied) output projection, rotary positions with LongRoPE short/long factors and its attention scaling."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.cache_utils import DynamicCache
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

from .configuration_minicpm import MiniCPMConfig


class MiniCPMRMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Statistics in float32 whatever the model dtype: a bf16 mean of squares loses the small components.
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (normed * self.weight.float()).to(x.dtype)


def _rope_settings(config: MiniCPMConfig) -> dict:
    # transformers 5 moves rope_scaling into rope_parameters (and rope_theta with it); 4.x keeps rope_scaling.
    scaling = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    scaling.setdefault("rope_theta", getattr(config, "rope_theta", 10000.0))
    return scaling


class MiniCPMRotaryEmbedding(nn.Module):
    """Rotary position angles (rotate-half layout). With rope_type longrope, each frequency is divided by a
    per-frequency factor: the short factors while the sequence fits in original_max_position_embeddings, the
    long factors beyond it; cos and sin are both multiplied by sqrt(1 + ln(s) / ln(original)), s being
    max_position_embeddings / original_max_position_embeddings, so attention logits are scaled by its square."""

    def __init__(self, config: MiniCPMConfig):
        super().__init__()
        # Plain Python values, no buffers: transformers 5 builds the model on the meta device and loads only the
        # checkpoint's tensors, so a buffer computed here would be left uninitialised.
        settings = _rope_settings(config)
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.theta = float(settings["rope_theta"])
        self.longrope = settings.get("rope_type", settings.get("type")) == "longrope"
        self.original_max_positions = config.max_position_embeddings
        self.attention_scaling = 1.0
        if self.longrope:
            self.original_max_positions = settings["original_max_position_embeddings"]
            self.short_factor = [float(f) for f in settings["short_factor"]]
            self.long_factor = [float(f) for f in settings["long_factor"]]
            stretch = config.max_position_embeddings / self.original_max_positions
            if stretch > 1.0:
                self.attention_scaling = math.sqrt(1 + math.log(stretch) / math.log(self.original_max_positions))

    def forward(self, position_ids: torch.Tensor, sequence_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        device = position_ids.device
        exponents = torch.arange(0, self.head_dim, 2, dtype=torch.float32, device=device) / self.head_dim
        inv_freq = 1.0 / self.theta ** exponents
        if self.longrope:
            factor = self.long_factor if sequence_length > self.original_max_positions else self.short_factor
            inv_freq = inv_freq / torch.tensor(factor, dtype=torch.float32, device=device)
        angles = position_ids.float()[..., None] * inv_freq  # [batch, seq, head_dim/2]
        angles = torch.cat((angles, angles), dim=-1)
        return angles.cos() * self.attention_scaling, angles.sin() * self.attention_scaling


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def _apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    cos, sin = cos[:, None].to(x.dtype), sin[:, None].to(x.dtype)  # broadcast over heads
    return x * cos + _rotate_half(x) * sin


class MiniCPMAttention(nn.Module):
    """Grouped-query attention: each key/value head serves num_attention_heads / num_key_value_heads
    consecutive query heads."""

    def __init__(self, config: MiniCPMConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_attention_heads {self.num_heads} is not a multiple of "
                             f"num_key_value_heads {self.num_kv_heads}")
        self.head_dim = config.hidden_size // self.num_heads
        bias = getattr(config, "attention_bias", False)
        self.q_proj = nn.Linear(config.hidden_size, self.num_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(config.hidden_size, self.num_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(config.hidden_size, self.num_kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, config.hidden_size, bias=bias)

    def forward(self, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor,
                cache: DynamicCache | None) -> torch.Tensor:
        batch, seq, _ = hidden.shape
        q = self.q_proj(hidden).view(batch, seq, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(hidden).view(batch, seq, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(hidden).view(batch, seq, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q, k = _apply_rotary(q, cos, sin), _apply_rotary(k, cos, sin)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)
        group = self.num_heads // self.num_kv_heads
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.head_dim ** -0.5)
        return self.o_proj(out.transpose(1, 2).reshape(batch, seq, self.num_heads * self.head_dim))


class MiniCPMMLP(nn.Module):
    def __init__(self, config: MiniCPMConfig):
        super().__init__()
        if config.hidden_act != "silu":
            raise ValueError(f"hidden_act {config.hidden_act!r} is not supported; allowed: 'silu'")
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class MiniCPMDecoderLayer(nn.Module):
    def __init__(self, config: MiniCPMConfig, layer_idx: int):
        super().__init__()
        self.input_layernorm = MiniCPMRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = MiniCPMAttention(config, layer_idx)
        self.post_attention_layernorm = MiniCPMRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MiniCPMMLP(config)
        # Depth-scaled residual (muP): keeps the residual stream's growth independent of the layer count.
        self.residual_scale = config.scale_depth / math.sqrt(config.num_hidden_layers)

    def forward(self, hidden, cos, sin, mask, cache):
        hidden = hidden + self.self_attn(self.input_layernorm(hidden), cos, sin, mask, cache) * self.residual_scale
        return hidden + self.mlp(self.post_attention_layernorm(hidden)) * self.residual_scale


class MiniCPMPreTrainedModel(PreTrainedModel):
    config_class = MiniCPMConfig
    base_model_prefix = "model"
    _no_split_modules = ["MiniCPMDecoderLayer"]

    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, MiniCPMRMSNorm):
            nn.init.ones_(module.weight)


class MiniCPMModel(MiniCPMPreTrainedModel):
    def __init__(self, config: MiniCPMConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.layers = nn.ModuleList(MiniCPMDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = MiniCPMRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary_emb = MiniCPMRotaryEmbedding(config)
        self.post_init()

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    def forward(self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
                position_ids: torch.LongTensor | None = None, past_key_values: DynamicCache | None = None,
                inputs_embeds: torch.Tensor | None = None, use_cache: bool | None = None,
                **kwargs) -> BaseModelOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids and inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        hidden = inputs_embeds * self.config.scale_emb
        batch, seq = hidden.shape[:2]
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache()
        past = past_key_values.get_seq_length() if past_key_values is not None else 0
        if position_ids is None:
            position_ids = torch.arange(past, past + seq, device=hidden.device)[None].expand(batch, seq)
        cos, sin = self.rotary_emb(position_ids, past + seq)
        mask = self._attention_mask(attention_mask, batch, seq, past, hidden.device)
        for layer in self.layers:
            hidden = layer(hidden, cos, sin, mask, past_key_values if use_cache else None)
        return BaseModelOutputWithPast(last_hidden_state=self.norm(hidden),
                                       past_key_values=past_key_values if use_cache else None)

    @staticmethod
    def _attention_mask(padding_mask, batch, seq, past, device) -> torch.Tensor:
        """Boolean [batch, 1, seq, past + seq]: causal, and padding positions (0 in the 2-D mask) hidden."""
        query_pos = torch.arange(past, past + seq, device=device)[:, None]
        key_pos = torch.arange(past + seq, device=device)[None, :]
        allowed = (key_pos <= query_pos)[None, None].expand(batch, 1, seq, past + seq)
        if padding_mask is not None:
            allowed = allowed & padding_mask[:, None, None, -(past + seq):].bool()
        return allowed


class MiniCPMForCausalLM(MiniCPMPreTrainedModel, GenerationMixin):
    def __init__(self, config: MiniCPMConfig):
        super().__init__(config)
        self.model = MiniCPMModel(config)
        # Tied checkpoints (BitCPM4-0.5B, the kit's tiny one) have no lm_head tensor: the output projection is
        # the embedding matrix itself, used directly so no tying machinery (which differs between transformers
        # 4 and 5) is involved.
        self.lm_head = None if config.tie_word_embeddings else nn.Linear(config.hidden_size, config.vocab_size,
                                                                         bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def set_input_embeddings(self, value):
        self.model.embed_tokens = value

    def get_output_embeddings(self):
        return self.lm_head

    def forward(self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
                position_ids: torch.LongTensor | None = None, past_key_values: DynamicCache | None = None,
                inputs_embeds: torch.Tensor | None = None, labels: torch.LongTensor | None = None,
                use_cache: bool | None = None, **kwargs) -> CausalLMOutputWithPast:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         past_key_values=past_key_values, inputs_embeds=inputs_embeds, use_cache=use_cache)
        # muP output scaling: the final hidden state is divided by the width multiplier before the projection.
        hidden = out.last_hidden_state / (self.config.hidden_size / self.config.dim_model_base)
        weight = self.model.embed_tokens.weight if self.lm_head is None else self.lm_head.weight
        logits = F.linear(hidden, weight).float()
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                   ignore_index=-100)
        return CausalLMOutputWithPast(loss=loss, logits=logits, past_key_values=out.past_key_values)
