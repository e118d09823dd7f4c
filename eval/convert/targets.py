"""Hugging Face architectures a proxy converts to, and the weight mapping into each.

A `ProxyConfig` (the trainers' model shape) decides the target: the first registered target that
computes exactly the proxy's function takes it; `target_for(cfg, name)` forces one and says why it
does not fit. Each target is one narrow object (`rejects`, `config`, `weights`), no string switches
elsewhere:

| proxy | target |
|---|---|
| dense | `LlamaForCausalLM` |
| dense + QK-norm | `Qwen3ForCausalLM` |
| softmax top-k MoE (renormalised, Megatron's default) | `MixtralForCausalLM` |
| same + QK-norm (first layers may be dense) | `Qwen3MoeForCausalLM` |
| sigmoid router, expert bias, shared expert, group-limited routing, first layers dense | `Glm4MoeForCausalLM` |
| the same with multi-latent attention | `DeepseekV3ForCausalLM` |

Layout facts the mapping relies on (megatron-core 0.16.1, transformers 5.23.0):
- Megatron fuses Q, K and V into `linear_qkv` **per query group**: for each of the `g` groups, its
  `heads / g` query heads, then its key head, then its value head. Hugging Face keeps three matrices.
- Megatron's SwiGLU `linear_fc1` stacks the gate rows, then the up rows; Hugging Face splits them
  into `gate_proj`/`up_proj`, and transformers 5 stores an MoE layer's experts fused as
  `experts.gate_up_proj [E, 2F, H]` (gate rows first, as Megatron) and `experts.down_proj [E, H, F]`.
- Megatron's softmax router picks the top-k logits and softmaxes over them, which equals Mixtral's
  softmax over all experts renormalised over the top-k. Its sigmoid router selects on
  `sigmoid + expert_bias` in groups scored by their top `top_k / group_top_k` experts; GLM-4-MoE and
  DeepSeek-V3 score groups by their top **2**, so group-limited routing converts when
  `top_k / group_top_k == 2`, or when it picks nothing the plain top-k would not (`group_routing`).
- Megatron's MLA de-interleaves the rotary half of q/k before rotating (`rope_interleave=True` in
  DeepSeek-V3's config) and always normalises the KV latent only with QK-norm on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from eval.convert.tensors import TensorTaker
from eval.errors import ConversionError
from trainers.config import MoEConfig, ProxyConfig

Weights = dict[str, Tensor]


# -- pieces shared by the targets -------------------------------------------------------------------
def _gqa(src: TensorTaker, cfg: ProxyConfig, i: int, *, qk_norm: bool) -> Weights:
    h, n, g, d = cfg.hidden_size, cfg.num_attention_heads, cfg.num_query_groups, cfg.head_dim
    per = n // g
    meg, hf = f"decoder.layers.{i}.self_attention", f"model.layers.{i}.self_attn"
    qkv = src.take(f"{meg}.linear_qkv.weight", ((n + 2 * g) * d, h)).view(g, (per + 2) * d, h)
    out = {
        f"{hf}.q_proj.weight": qkv[:, : per * d].reshape(n * d, h),
        f"{hf}.k_proj.weight": qkv[:, per * d : (per + 1) * d].reshape(g * d, h),
        f"{hf}.v_proj.weight": qkv[:, (per + 1) * d :].reshape(g * d, h),
        f"{hf}.o_proj.weight": src.take(f"{meg}.linear_proj.weight", (h, n * d)),
    }
    if qk_norm:
        out[f"{hf}.q_norm.weight"] = src.take(f"{meg}.q_layernorm.weight", (d,))
        out[f"{hf}.k_norm.weight"] = src.take(f"{meg}.k_layernorm.weight", (d,))
    return out


def _mla(src: TensorTaker, cfg: ProxyConfig, i: int) -> Weights:
    assert cfg.mla is not None
    m, h, n = cfg.mla, cfg.hidden_size, cfg.num_attention_heads
    qk = m.qk_head_dim + m.qk_pos_emb_head_dim
    meg, hf = f"decoder.layers.{i}.self_attention", f"model.layers.{i}.self_attn"
    out: Weights = {}
    if m.q_lora_rank is None:
        out[f"{hf}.q_proj.weight"] = src.take(f"{meg}.linear_q_proj.weight", (n * qk, h))
    else:
        out[f"{hf}.q_a_proj.weight"] = src.take(f"{meg}.linear_q_down_proj.weight", (m.q_lora_rank, h))
        out[f"{hf}.q_a_layernorm.weight"] = src.take(f"{meg}.q_layernorm.weight", (m.q_lora_rank,))
        out[f"{hf}.q_b_proj.weight"] = src.take(f"{meg}.linear_q_up_proj.weight", (n * qk, m.q_lora_rank))
    out[f"{hf}.kv_a_proj_with_mqa.weight"] = src.take(
        f"{meg}.linear_kv_down_proj.weight", (m.kv_lora_rank + m.qk_pos_emb_head_dim, h)
    )
    out[f"{hf}.kv_a_layernorm.weight"] = src.take(f"{meg}.kv_layernorm.weight", (m.kv_lora_rank,))
    out[f"{hf}.kv_b_proj.weight"] = src.take(
        f"{meg}.linear_kv_up_proj.weight", (n * (m.qk_head_dim + m.v_head_dim), m.kv_lora_rank)
    )
    out[f"{hf}.o_proj.weight"] = src.take(f"{meg}.linear_proj.weight", (h, n * m.v_head_dim))
    return out


def _swiglu(src: TensorTaker, meg: str, hf: str, hidden: int, ffn: int) -> Weights:
    """One SwiGLU MLP: Megatron's fused fc1 (gate rows, then up rows) -> gate_proj, up_proj."""
    fc1 = src.take(f"{meg}.linear_fc1.weight", (2 * ffn, hidden))
    return {
        f"{hf}.gate_proj.weight": fc1[:ffn],
        f"{hf}.up_proj.weight": fc1[ffn:],
        f"{hf}.down_proj.weight": src.take(f"{meg}.linear_fc2.weight", (hidden, ffn)),
    }


def _experts(src: TensorTaker, cfg: ProxyConfig, moe: MoEConfig, i: int) -> Weights:
    """Routed experts stacked as transformers 5 keeps them, plus the router weight."""
    h, f, e = cfg.hidden_size, moe.expert_ffn_hidden_size, moe.num_experts
    meg, hf = f"decoder.layers.{i}.mlp", f"model.layers.{i}.mlp"
    fc1 = [src.take(f"{meg}.experts.local_experts.{k}.linear_fc1.weight", (2 * f, h)) for k in range(e)]
    fc2 = [src.take(f"{meg}.experts.local_experts.{k}.linear_fc2.weight", (h, f)) for k in range(e)]
    return {
        f"{hf}.gate.weight": src.take(f"{meg}.router.weight", (e, h)),
        f"{hf}.experts.gate_up_proj": torch.stack(fc1),
        f"{hf}.experts.down_proj": torch.stack(fc2),
    }


def _deepseek_moe(src: TensorTaker, cfg: ProxyConfig, moe: MoEConfig, i: int) -> Weights:
    """Experts + sigmoid router with its correction bias (zeros without one) + shared expert."""
    meg, hf = f"decoder.layers.{i}.mlp", f"model.layers.{i}.mlp"
    out = _experts(src, cfg, moe, i)
    if moe.expert_bias:
        out[f"{hf}.gate.e_score_correction_bias"] = src.take(f"{meg}.router.expert_bias", (moe.num_experts,))
    else:
        out[f"{hf}.gate.e_score_correction_bias"] = torch.zeros(moe.num_experts)
    if moe.shared_expert_ffn_hidden_size:
        out.update(
            _swiglu(
                src, f"{meg}.shared_experts", f"{hf}.shared_experts", cfg.hidden_size, moe.shared_expert_ffn_hidden_size
            )
        )
    else:  # the target always builds a shared expert; zero width makes it add exactly 0
        h = cfg.hidden_size
        out[f"{hf}.shared_experts.gate_proj.weight"] = torch.zeros(0, h)
        out[f"{hf}.shared_experts.up_proj.weight"] = torch.zeros(0, h)
        out[f"{hf}.shared_experts.down_proj.weight"] = torch.zeros(h, 0)
    return out


def _common_config(cfg: ProxyConfig) -> dict[str, Any]:
    return {
        "vocab_size": cfg.vocab,
        "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_query_groups,
        "intermediate_size": cfg.ffn_hidden_size,
        "max_position_embeddings": cfg.seq_len,
        "rms_norm_eps": cfg.norm_eps,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_base},
        "tie_word_embeddings": cfg.tie_embeddings,
        "hidden_act": "silu",
        "initializer_range": cfg.init_std,
        "attention_bias": False,
        "attention_dropout": 0.0,
    }


def group_routing(moe: MoEConfig) -> tuple[int, int] | None:
    """(groups, groups picked) when group-limited routing changes which experts are chosen, else None.

    It changes nothing when every group is picked, or when as many groups are picked as experts
    (`group_top_k == top_k`, so groups are scored by their best expert): each of the overall top-k
    experts sits in a group whose best score beats all but fewer than k other groups' best, so its
    group is always picked. DeepSeek-V3 (8 of 256 experts from 4 of 8 groups) is the active case.
    """
    if not moe.num_groups or not moe.group_top_k or moe.group_top_k >= moe.num_groups or moe.group_top_k >= moe.top_k:
        return None
    return moe.num_groups, moe.group_top_k


def _sigmoid_moe_config(cfg: ProxyConfig, moe: MoEConfig) -> dict[str, Any]:
    """GLM-4-MoE / DeepSeek-V3 router and expert fields."""
    groups, picked = group_routing(moe) or (1, 1)
    return {
        "moe_intermediate_size": moe.expert_ffn_hidden_size,
        "n_routed_experts": moe.num_experts,
        "num_experts_per_tok": moe.top_k,
        "n_shared_experts": moe.shared_expert_ffn_hidden_size // moe.expert_ffn_hidden_size,
        "routed_scaling_factor": moe.topk_scaling_factor or 1.0,
        "n_group": groups,
        "topk_group": picked,
        "first_k_dense_replace": moe.first_k_dense,
        "norm_topk_prob": moe.top_k > 1,  # Megatron normalises sigmoid scores only for top_k > 1
        "num_nextn_predict_layers": 0,
    }


# -- reasons a proxy does not fit a target -----------------------------------------------------------
def _softmax_moe_rejects(moe: MoEConfig) -> str | None:
    if moe.score_function != "softmax":
        return f"its router scores with {moe.score_function}, this target with softmax"
    if moe.shared_expert_ffn_hidden_size:
        return "it has a shared expert"
    if group_routing(moe):
        return "it uses group-limited routing"
    if moe.topk_scaling_factor not in (None, 1.0):
        return "it scales the top-k probabilities"
    return None


def _sigmoid_moe_rejects(moe: MoEConfig) -> str | None:
    if moe.score_function != "sigmoid":
        return f"its router scores with {moe.score_function}, this target with sigmoid"
    routing = group_routing(moe)
    groups, picked = routing or (1, 1)
    if moe.num_experts // groups < 2:
        return f"groups of {moe.num_experts // groups} expert; the target scores each group by its top 2 experts"
    if routing and moe.top_k // picked != 2:
        return (
            f"it scores expert groups by their top {moe.top_k // picked} experts "
            f"(top_k {moe.top_k} / group_top_k {picked}); the target always uses the top 2"
        )
    if moe.shared_expert_ffn_hidden_size % moe.expert_ffn_hidden_size:
        return (
            f"its shared expert ({moe.shared_expert_ffn_hidden_size}) is not a whole number of experts "
            f"({moe.expert_ffn_hidden_size})"
        )
    return None


# -- the targets -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """One Hugging Face architecture: which proxies it computes exactly, its config, its weights."""

    name: str
    architecture: str  # the class written to config.json
    model_type: str
    rejects: Callable[[ProxyConfig], str | None]  # why a proxy does not fit, or None
    extra_config: Callable[[ProxyConfig], dict[str, Any]]
    attention: Callable[[TensorTaker, ProxyConfig, int], Weights]
    moe_layer: Callable[[TensorTaker, ProxyConfig, MoEConfig, int], Weights] | None = None

    def config(self, cfg: ProxyConfig) -> Any:
        """The Hugging Face config object (float32, the dtype the verification runs in)."""
        from transformers import AutoConfig  # transformers: ~2 s to import, only when a model is built

        kwargs = _common_config(cfg) | self.extra_config(cfg)
        config = AutoConfig.for_model(self.model_type, **kwargs)
        config.architectures = [self.architecture]
        config.dtype = torch.float32
        return config

    def weights(self, cfg: ProxyConfig, src: TensorTaker) -> Weights:
        """Every Hugging Face tensor from the Megatron-named ones; fails on anything left over."""
        h = cfg.hidden_size
        out: Weights = {"model.embed_tokens.weight": src.take("embedding.word_embeddings.weight", (cfg.vocab, h))}
        for i, is_moe in enumerate(cfg.moe_layers):
            meg, hf = f"decoder.layers.{i}", f"model.layers.{i}"
            out[f"{hf}.input_layernorm.weight"] = src.take(f"{meg}.input_layernorm.weight", (h,))
            out[f"{hf}.post_attention_layernorm.weight"] = src.take(f"{meg}.pre_mlp_layernorm.weight", (h,))
            out.update(self.attention(src, cfg, i))
            if is_moe and cfg.moe is not None:
                assert self.moe_layer is not None, f"{self.name} accepted an MoE proxy without an MoE mapping"
                out.update(self.moe_layer(src, cfg, cfg.moe, i))
            else:
                out.update(_swiglu(src, f"{meg}.mlp", f"{hf}.mlp", h, cfg.ffn_hidden_size))
        out["model.norm.weight"] = src.take("decoder.final_layernorm.weight", (h,))
        if not cfg.tie_embeddings:
            out["lm_head.weight"] = src.take("output_layer.weight", (cfg.vocab, h))
        src.finish()
        return out


def _llama_rejects(cfg: ProxyConfig) -> str | None:
    if cfg.mla is not None:
        return "it uses multi-latent attention"
    if cfg.moe is not None:
        return "it is a mixture of experts"
    if cfg.qk_layernorm:
        return "it normalises queries and keys (QK-norm)"
    return None


def _qwen3_rejects(cfg: ProxyConfig) -> str | None:
    if cfg.mla is not None:
        return "it uses multi-latent attention"
    if cfg.moe is not None:
        return "it is a mixture of experts"
    if not cfg.qk_layernorm:
        return "it has no QK-norm, which this target always applies"
    return None


def _mixtral_rejects(cfg: ProxyConfig) -> str | None:
    if cfg.mla is not None:
        return "it uses multi-latent attention"
    if cfg.moe is None:
        return "it is dense"
    if cfg.qk_layernorm:
        return "it normalises queries and keys (QK-norm)"
    if cfg.moe.first_k_dense:
        return "its first layers are dense"
    return _softmax_moe_rejects(cfg.moe)


def _qwen3_moe_rejects(cfg: ProxyConfig) -> str | None:
    if cfg.mla is not None:
        return "it uses multi-latent attention"
    if cfg.moe is None:
        return "it is dense"
    if not cfg.qk_layernorm:
        return "it has no QK-norm, which this target always applies"
    return _softmax_moe_rejects(cfg.moe)


def _glm4_moe_rejects(cfg: ProxyConfig) -> str | None:
    if cfg.mla is not None:
        return "it uses multi-latent attention"
    if cfg.moe is None:
        return "it is dense"
    return _sigmoid_moe_rejects(cfg.moe)


def _deepseek_v3_rejects(cfg: ProxyConfig) -> str | None:
    if cfg.mla is None:
        return "it uses standard attention, this target multi-latent attention"
    if not cfg.qk_layernorm:
        return "its MLA latents are not normalised (QK-norm off); DeepSeek-V3 always normalises them"
    if cfg.moe is None:
        return None
    return _sigmoid_moe_rejects(cfg.moe)


def _gqa_plain(src: TensorTaker, cfg: ProxyConfig, i: int) -> Weights:
    return _gqa(src, cfg, i, qk_norm=False)


def _gqa_qk_norm(src: TensorTaker, cfg: ProxyConfig, i: int) -> Weights:
    return _gqa(src, cfg, i, qk_norm=True)


def _head_dim(cfg: ProxyConfig) -> dict[str, Any]:
    return {"head_dim": cfg.head_dim}


def _mixtral_config(cfg: ProxyConfig) -> dict[str, Any]:
    assert cfg.moe is not None
    return {
        "head_dim": cfg.head_dim,
        "intermediate_size": cfg.moe.expert_ffn_hidden_size,
        "num_local_experts": cfg.moe.num_experts,
        "num_experts_per_tok": cfg.moe.top_k,
        "router_aux_loss_coef": cfg.moe.aux_loss_coeff,
    }


def _qwen3_moe_config(cfg: ProxyConfig) -> dict[str, Any]:
    assert cfg.moe is not None
    return {
        "head_dim": cfg.head_dim,
        "moe_intermediate_size": cfg.moe.expert_ffn_hidden_size,
        "num_experts": cfg.moe.num_experts,
        "num_experts_per_tok": cfg.moe.top_k,
        "norm_topk_prob": True,
        "decoder_sparse_step": 1,
        "mlp_only_layers": list(range(cfg.moe.first_k_dense)),
        "router_aux_loss_coef": cfg.moe.aux_loss_coeff,
    }


def _glm4_moe_config(cfg: ProxyConfig) -> dict[str, Any]:
    assert cfg.moe is not None
    rope = {"rope_type": "default", "rope_theta": cfg.rope_base, "partial_rotary_factor": 1.0}
    return {"head_dim": cfg.head_dim, "use_qk_norm": cfg.qk_layernorm, "rope_parameters": rope} | _sigmoid_moe_config(
        cfg, cfg.moe
    )


def _deepseek_v3_config(cfg: ProxyConfig) -> dict[str, Any]:
    assert cfg.mla is not None
    m = cfg.mla
    out: dict[str, Any] = {
        "kv_lora_rank": m.kv_lora_rank,
        "q_lora_rank": m.q_lora_rank,
        "qk_rope_head_dim": m.qk_pos_emb_head_dim,
        "qk_nope_head_dim": m.qk_head_dim,
        "v_head_dim": m.v_head_dim,
        "num_key_value_heads": cfg.num_attention_heads,
        "rope_interleave": True,
    }
    if cfg.moe is None:  # all layers dense
        return out | {"first_k_dense_replace": cfg.num_layers, "n_routed_experts": 2, "num_nextn_predict_layers": 0}
    return out | _sigmoid_moe_config(cfg, cfg.moe)


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("llama", "LlamaForCausalLM", "llama", _llama_rejects, _head_dim, _gqa_plain),
        Target("qwen3", "Qwen3ForCausalLM", "qwen3", _qwen3_rejects, _head_dim, _gqa_qk_norm),
        Target("mixtral", "MixtralForCausalLM", "mixtral", _mixtral_rejects, _mixtral_config, _gqa_plain, _experts),
        Target(
            "qwen3_moe",
            "Qwen3MoeForCausalLM",
            "qwen3_moe",
            _qwen3_moe_rejects,
            _qwen3_moe_config,
            _gqa_qk_norm,
            _experts,
        ),
        Target(
            "glm4_moe",
            "Glm4MoeForCausalLM",
            "glm4_moe",
            _glm4_moe_rejects,
            _glm4_moe_config,
            lambda src, cfg, i: _gqa(src, cfg, i, qk_norm=cfg.qk_layernorm),
            _deepseek_moe,
        ),
        Target(
            "deepseek_v3",
            "DeepseekV3ForCausalLM",
            "deepseek_v3",
            _deepseek_v3_rejects,
            _deepseek_v3_config,
            _mla,
            _deepseek_moe,
        ),
    )
}


def target_for(cfg: ProxyConfig, name: str | None = None) -> Target:
    """The target that computes `cfg` exactly: `name` if given (an error says why it does not fit),
    else the first that fits; none fitting is an error listing each target's reason."""
    if name is not None:
        try:
            target = TARGETS[name]
        except KeyError:
            raise ConversionError(f"unknown target (known: {', '.join(TARGETS)})", where=f"target {name}") from None
        reason = target.rejects(cfg)
        if reason:
            raise ConversionError(
                f"{target.architecture} cannot compute this proxy: {reason}", where=f"proxy[{cfg.name}]"
            )
        return target
    reasons = []
    for target in TARGETS.values():
        reason = target.rejects(cfg)
        if reason is None:
            return target
        reasons.append(f"{target.architecture}: {reason}")
    raise ConversionError(
        "no Hugging Face architecture computes this proxy (" + "; ".join(reasons) + ")", where=f"proxy[{cfg.name}]"
    )
