# Written for studykit (Apache-2.0). Shipped inside the kit's tiny MiniCPM checkpoint so the checkpoint looks
# like the real MiniCPM/BitCPM ones: config.json names this class through `auto_map`, so loading it needs
# `trust_remote_code`. vLLM runs the weights with its own MiniCPMForCausalLM; transformers runs them with the kit's
# modeling_minicpm.py (the accuracy reference).
#
# Old-style `__init__` (keyword arguments, then super().__init__), like the configuration files published with
# MiniCPM models, so it loads with transformers 4.x (the Ascend host's stack) and 5.x (this kit's CPU stack).
"""MiniCPM configuration: a Llama-shaped decoder with muP-style scales and LongRoPE."""

from transformers import PretrainedConfig


class MiniCPMConfig(PretrainedConfig):
    model_type = "minicpm"
    keys_to_ignore_at_inference = ["past_key_values"]

    def __init__(
        self,
        vocab_size=32000,
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        num_key_value_heads=None,
        hidden_act="silu",
        max_position_embeddings=32768,
        initializer_range=0.02,
        rms_norm_eps=1e-6,
        use_cache=True,
        pad_token_id=None,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=True,
        rope_theta=10000.0,
        rope_scaling=None,
        attention_bias=False,
        attention_dropout=0.0,
        scale_emb=1.0,
        dim_model_base=1,
        scale_depth=1.0,
        **kwargs,
    ):
        if hidden_size % num_attention_heads:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of num_attention_heads {num_attention_heads}")
        self.vocab_size = vocab_size
        self.max_position_embeddings = max_position_embeddings
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_attention_heads if num_key_value_heads is None else num_key_value_heads
        self.hidden_act = hidden_act
        self.initializer_range = initializer_range
        self.rms_norm_eps = rms_norm_eps
        self.use_cache = use_cache
        self.rope_theta = rope_theta
        self.rope_scaling = rope_scaling
        self._check_rope_scaling()
        self.attention_bias = attention_bias
        self.attention_dropout = attention_dropout
        # muP-style scales: embeddings times scale_emb, each residual branch times
        # scale_depth / sqrt(num_hidden_layers), final hidden state divided by hidden_size / dim_model_base.
        self.scale_emb = scale_emb
        self.dim_model_base = dim_model_base
        self.scale_depth = scale_depth
        super().__init__(
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )

    def _check_rope_scaling(self):
        scaling = self.rope_scaling
        if not scaling:
            return
        if not isinstance(scaling, dict):
            raise ValueError(f"rope_scaling must be a dict, got {scaling!r}")
        kind = scaling.get("rope_type", scaling.get("type"))
        if kind != "longrope":
            return
        half = self.hidden_size // self.num_attention_heads // 2
        for key in ("short_factor", "long_factor"):
            factors = scaling.get(key)
            if not isinstance(factors, list) or len(factors) != half:
                raise ValueError(f"rope_scaling.{key} must be a list of head_dim/2 = {half} floats")
