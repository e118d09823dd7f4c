"""Named proxy shapes, as plain functions; the CLI and sweep specs only override their fields.

Sizes below are for the demo tokenizer's 8,192-token vocabulary (the vocabulary always comes from the
corpus, so a larger tokenizer makes every preset larger; `mixsweep train --dry-run` prints the exact
figures for a corpus).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trainers.config import MLAConfig, MoEConfig, ProxyConfig
from trainers.errors import ConfigError


def deepseek_v3_moe(
    num_experts: int,
    expert_ffn: int,
    *,
    top_k: int = 2,
    shared_ffn: int | None = None,
    num_groups: int = 4,
    group_top_k: int = 2,
    **changes: Any,
) -> MoEConfig:
    """DeepSeek-V3's MoE layout, shared by the MoE presets and `benchmarks/train.py`: the first layer
    dense, `num_experts` routed experts (top-`top_k`, group-limited to `group_top_k` of `num_groups`)
    plus a shared expert (`shared_ffn`, by default as wide as a routed one), a sigmoid router with the
    aux-loss-free expert bias and a small sequence-level balancing loss. `changes` sets any other
    `MoEConfig` field."""
    return MoEConfig(
        num_experts=num_experts,
        top_k=top_k,
        expert_ffn_hidden_size=expert_ffn,
        shared_expert_ffn_hidden_size=expert_ffn if shared_ffn is None else shared_ffn,
        score_function="sigmoid",
        expert_bias=True,
        num_groups=num_groups,
        group_top_k=group_top_k,
        first_k_dense=1,
        aux_loss_type="seq_aux_loss",
        aux_loss_coeff=1e-4,
        **changes,
    )


def tiny_cpu(**overrides: Any) -> ProxyConfig:
    """~1.2M parameters (mostly the embedding tables): a 2-layer dense model for tests and smoke runs."""
    cfg = ProxyConfig(
        name="tiny_cpu",
        num_layers=2,
        hidden_size=64,
        num_attention_heads=4,
        num_query_groups=2,
        ffn_hidden_size=192,
        seq_len=256,
    )
    return cfg.replace(**overrides) if overrides else cfg


def moe_cpu(**overrides: Any) -> ProxyConfig:
    """~3.8M parameters, DeepSeek-V3's MoE layout in miniature: the first layer dense, 8 routed experts
    (top-2, group-limited to 2 of 4 groups) plus a shared expert, a sigmoid router with the
    aux-loss-free expert bias and a small sequence-level balancing loss."""
    cfg = ProxyConfig(
        name="moe_cpu",
        num_layers=4,
        hidden_size=128,
        num_attention_heads=4,
        num_query_groups=2,
        ffn_hidden_size=512,
        seq_len=256,
        moe=deepseek_v3_moe(num_experts=8, expert_ffn=128),
    )
    return cfg.replace(**overrides) if overrides else cfg


def moe_cpu_16m(**overrides: Any) -> ProxyConfig:
    """~16M parameters (~9.5M active): `moe_cpu` scaled up about 4x (hidden 256, 6 layers, 8 query
    heads in 4 groups, expert FFN 288) as the larger target model that checks whether a mixture chosen
    with `moe_cpu` proxies still wins at a bigger size (`mixsweep validate`); same layout and router."""
    cfg = moe_cpu().replace(
        name="moe_cpu_16m",
        num_layers=6,
        hidden_size=256,
        num_attention_heads=8,
        num_query_groups=4,
        ffn_hidden_size=1024,
        moe=deepseek_v3_moe(num_experts=8, expert_ffn=288),
    )
    return cfg.replace(**overrides) if overrides else cfg


def moe_60m(**overrides: Any) -> ProxyConfig:
    """~64M parameters (~25M active): the same layout at a size worth a GPU trial, 16 experts top-2."""
    cfg = ProxyConfig(
        name="moe_60m",
        num_layers=8,
        hidden_size=512,
        num_attention_heads=8,
        num_query_groups=4,
        ffn_hidden_size=1536,
        seq_len=1024,
        moe=deepseek_v3_moe(num_experts=16, expert_ffn=256),
    )
    return cfg.replace(**overrides) if overrides else cfg


def openseek_small_proxy(mla: bool | None = None, **overrides: Any) -> ProxyConfig:
    """OpenSeek-Small-v1 (DeepSeek-V3 architecture, 1.4B) scaled down 4x in width and sequence:
    6 layers (the first dense), hidden 320, 10 heads, 64 experts top-6 with a shared expert, sigmoid
    router with expert bias, seq_aux_loss 1e-4, top-k scaling 2.446, QK-norm, tied embeddings,
    RoPE base 1e6, init std 6e-3 (values from OpenSeek's `train_deepseek_v3_1_4b.yaml`).

    OpenSeek uses multi-latent attention; Megatron-Core builds MLA only with TransformerEngine, so
    `mla=None` turns it on exactly when a CUDA GPU is present and otherwise keeps standard attention
    with the same heads (recorded in the config, hence in the result)."""
    if mla is None:
        # lazy: presets are read by light code (the CLI, sweep specs) that must not pay torch's import
        import torch

        mla = torch.cuda.is_available()
    cfg = ProxyConfig(
        name="openseek_small_proxy",
        num_layers=6,
        hidden_size=320,
        num_attention_heads=10,
        num_query_groups=10,
        ffn_hidden_size=1792,
        seq_len=1024,
        qk_layernorm=True,
        tie_embeddings=True,
        rope_base=1_000_000.0,
        norm_eps=1e-6,
        init_std=6e-3,
        mla=MLAConfig(kv_lora_rank=128, qk_head_dim=32, qk_pos_emb_head_dim=16, v_head_dim=32) if mla else None,
        moe=deepseek_v3_moe(
            num_experts=64,
            expert_ffn=224,
            top_k=6,
            shared_ffn=448,
            num_groups=1,
            group_top_k=1,
            bias_update_rate=1e-3,
            topk_scaling_factor=2.446,
        ),
    )
    return cfg.replace(**overrides) if overrides else cfg


PRESETS: dict[str, Callable[..., ProxyConfig]] = {
    "tiny_cpu": tiny_cpu,
    "moe_cpu": moe_cpu,
    "moe_cpu_16m": moe_cpu_16m,
    "moe_60m": moe_60m,
    "openseek_small_proxy": openseek_small_proxy,
}


def preset(name: str, **overrides: Any) -> ProxyConfig:
    """A preset by name, with field overrides (`preset("tiny_cpu", seq_len=64)`)."""
    try:
        factory = PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset (known: {', '.join(PRESETS)})", where=name) from None
    return factory(**overrides)
