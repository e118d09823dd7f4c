"""The proxy model as a plain PyTorch module: what the DeepSpeed backend trains and the benchmark's
plain loop runs.

It computes the same function as megatron-core's `GPTModel` built from the same `ProxyConfig` with
the local layer spec, and its `state_dict()` has **exactly Megatron's names and (tensor-parallel 1)
layouts**, so one converter reads both backends' weights and a state dict moves between them
unchanged (tests load a Megatron state dict into this module and compare logits):

```
embedding.word_embeddings.weight                    [vocab, hidden]
decoder.layers.{i}.input_layernorm.weight           [hidden]                     RMSNorm
decoder.layers.{i}.self_attention.linear_qkv.weight [(heads + 2 * groups) * d, hidden]
    rows per query group g: its heads/groups query heads, then its key head, then its value head
decoder.layers.{i}.self_attention.q_layernorm.weight, k_layernorm.weight [d]   (qk_layernorm only)
decoder.layers.{i}.self_attention.linear_proj.weight [hidden, heads * d]
decoder.layers.{i}.pre_mlp_layernorm.weight         [hidden]
dense layer:  decoder.layers.{i}.mlp.linear_fc1.weight [2 * ffn, hidden]  rows: gate, then up (SwiGLU)
              decoder.layers.{i}.mlp.linear_fc2.weight [hidden, ffn]
MoE layer:    decoder.layers.{i}.mlp.router.weight [experts, hidden]
              decoder.layers.{i}.mlp.router.expert_bias [experts]          (buffer; sigmoid + expert_bias)
              decoder.layers.{i}.mlp.experts.local_experts.{e}.linear_fc1.weight [2 * expert_ffn, hidden]
              decoder.layers.{i}.mlp.experts.local_experts.{e}.linear_fc2.weight [hidden, expert_ffn]
              decoder.layers.{i}.mlp.shared_experts.linear_fc1.weight / linear_fc2.weight (shared expert only)
decoder.final_layernorm.weight                      [hidden]
output_layer.weight                                 [vocab, hidden]   (absent with tie_embeddings)
```

RoPE is Megatron's non-interleaved ("rotate half") form; attention runs through
`torch.nn.functional.scaled_dot_product_attention`. MLA is not built here (Megatron + TE only).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainers.config import MoEConfig, ProxyConfig
from trainers.errors import ConfigError


class SwiGLU(nn.Module):
    def __init__(self, hidden: int, ffn: int) -> None:
        super().__init__()
        self.linear_fc1 = nn.Linear(hidden, 2 * ffn, bias=False)
        self.linear_fc2 = nn.Linear(ffn, hidden, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.linear_fc1(x).chunk(2, dim=-1)
        return self.linear_fc2(F.silu(gate) * up)


def rope_tables(seq_len: int, head_dim: int, base: float) -> tuple[Tensor, Tensor]:
    """cos and sin of Megatron's RotaryEmbedding: float32 [seq, head_dim], frequencies repeated twice."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    freqs = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def apply_rope(t: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """t: [batch, heads, seq, d]."""
    x1, x2 = t.chunk(2, dim=-1)
    return t * cos + torch.cat((-x2, x1), dim=-1) * sin


class SelfAttention(nn.Module):
    def __init__(self, cfg: ProxyConfig) -> None:
        super().__init__()
        self.heads, self.groups, self.d = cfg.num_attention_heads, cfg.num_query_groups, cfg.head_dim
        self.linear_qkv = nn.Linear(cfg.hidden_size, (self.heads + 2 * self.groups) * self.d, bias=False)
        self.linear_proj = nn.Linear(self.heads * self.d, cfg.hidden_size, bias=False)
        self.q_layernorm = nn.RMSNorm(self.d, eps=cfg.norm_eps) if cfg.qk_layernorm else None
        self.k_layernorm = nn.RMSNorm(self.d, eps=cfg.norm_eps) if cfg.qk_layernorm else None

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        b, s, _ = x.shape
        per_group = self.heads // self.groups
        qkv = self.linear_qkv(x).view(b, s, self.groups, (per_group + 2) * self.d)
        q, k, v = qkv.split([per_group * self.d, self.d, self.d], dim=-1)
        q = q.reshape(b, s, self.heads, self.d)
        if self.q_layernorm is not None and self.k_layernorm is not None:
            q, k = self.q_layernorm(q), self.k_layernorm(k)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [b, heads|groups, s, d]
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.groups != self.heads)
        return self.linear_proj(out.transpose(1, 2).reshape(b, s, self.heads * self.d))


class Router(nn.Module):
    """Megatron's TopKRouter (no token dropping): scores, top-k choice, balancing loss, expert bias."""

    def __init__(self, cfg: ProxyConfig, moe: MoEConfig) -> None:
        super().__init__()
        self.moe = moe
        self.weight = nn.Parameter(torch.empty(moe.num_experts, cfg.hidden_size))
        if moe.expert_bias:
            self.register_buffer("expert_bias", torch.zeros(moe.num_experts))
            self.register_buffer("local_tokens_per_expert", torch.zeros(moe.num_experts), persistent=False)
        else:
            self.expert_bias: Tensor | None = None
            self.local_tokens_per_expert: Tensor | None = None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x: [b, s, h] -> (probs [T, E], routing_map [T, E] bool, balancing loss scaled by its coefficient)."""
        m = self.moe
        b, s, _ = x.shape
        logits = F.linear(x.reshape(b * s, -1).float(), self.weight.float())
        if m.score_function == "softmax":
            scores, top = self._topk(logits)
            probs = torch.softmax(scores, dim=-1, dtype=torch.float32)
        else:
            sig = torch.sigmoid(logits)
            if self.expert_bias is not None:
                _, top = self._topk(sig + self.expert_bias)
                scores = sig.gather(1, top)
            else:
                scores, top = self._topk(sig)
            probs = scores / (scores.sum(dim=-1, keepdim=True) + 1e-20) if m.top_k > 1 else scores
        if m.topk_scaling_factor:
            probs = probs * m.topk_scaling_factor
        routing_probs = torch.zeros_like(logits).scatter(1, top, probs)
        routing_map = torch.zeros_like(logits, dtype=torch.int32).scatter(1, top, 1).bool()
        aux = logits.new_zeros(())
        if self.training and torch.is_grad_enabled() and m.aux_loss_coeff > 0:
            aux = self._balancing_loss(logits, b, s)
        if self.training and torch.is_grad_enabled() and self.local_tokens_per_expert is not None:
            with torch.no_grad():
                self.local_tokens_per_expert += routing_map.sum(dim=0)
        return routing_probs, routing_map, aux

    def _topk(self, scores: Tensor) -> tuple[Tensor, Tensor]:
        m = self.moe
        if not m.group_top_k or not m.num_groups:
            return torch.topk(scores, k=m.top_k, dim=1)
        t = scores.shape[0]
        group_scores = scores.view(t, m.num_groups, -1).topk(m.top_k // m.group_top_k, dim=-1)[0].sum(dim=-1)
        group_idx = torch.topk(group_scores, k=m.group_top_k, dim=-1, sorted=False)[1]
        group_mask = torch.zeros_like(group_scores).scatter_(1, group_idx, 1)
        score_mask = group_mask.unsqueeze(-1).expand(t, m.num_groups, m.num_experts // m.num_groups).reshape(t, -1)
        return torch.topk(scores.masked_fill(~score_mask.bool(), float("-inf")), k=m.top_k, dim=-1)

    def _balancing_loss(self, logits: Tensor, b: int, s: int) -> Tensor:
        """Switch-style loss on scores over all experts (Megatron's compute_routing_scores_for_aux_loss)."""
        m = self.moe
        if m.score_function == "softmax":
            scores = torch.softmax(logits, dim=-1, dtype=torch.float32)
        else:
            scores = torch.sigmoid(logits)
            scores = scores / (scores.sum(dim=-1, keepdim=True) + 1e-20)
        top = torch.topk(scores, k=m.top_k, dim=1).indices
        chosen = torch.zeros_like(logits).scatter(1, top, 1.0)
        scale = m.num_experts * m.aux_loss_coeff / m.top_k
        if m.aux_loss_type == "seq_aux_loss":  # per sequence, averaged over the batch
            p = scores.view(b, s, -1).sum(dim=1)
            f = chosen.view(b, s, -1).sum(dim=1)
            return (p * f).sum() * scale / (s * s) / b
        t = b * s
        return (scores.sum(dim=0) * chosen.sum(dim=0)).sum() * scale / (t * t)


class Experts(nn.Module):
    def __init__(self, cfg: ProxyConfig, moe: MoEConfig) -> None:
        super().__init__()
        self.local_experts = nn.ModuleList(
            SwiGLU(cfg.hidden_size, moe.expert_ffn_hidden_size) for _ in range(moe.num_experts)
        )


class MoE(nn.Module):
    def __init__(self, cfg: ProxyConfig, moe: MoEConfig) -> None:
        super().__init__()
        self.router = Router(cfg, moe)
        self.experts = Experts(cfg, moe)
        self.shared_experts = (
            SwiGLU(cfg.hidden_size, moe.shared_expert_ffn_hidden_size) if moe.shared_expert_ffn_hidden_size else None
        )
        self.aux_loss: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        b, s, h = x.shape
        probs, routing_map, self.aux_loss = self.router(x)
        flat = x.reshape(b * s, h)
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts.local_experts):
            # an expert that got no tokens still runs (on zero rows), as in Megatron, so its weights get
            # a zero gradient and AdamW decays and counts steps for every parameter alike
            idx = routing_map[:, e].nonzero(as_tuple=True)[0]
            out.index_add_(0, idx, expert(flat[idx]) * probs[idx, e, None].to(flat.dtype))
        if self.shared_experts is not None:
            out = out + self.shared_experts(flat)
        return out.view(b, s, h)


class TransformerLayer(nn.Module):
    def __init__(self, cfg: ProxyConfig, is_moe: bool) -> None:
        super().__init__()
        self.input_layernorm = nn.RMSNorm(cfg.hidden_size, eps=cfg.norm_eps)
        self.self_attention = SelfAttention(cfg)
        self.pre_mlp_layernorm = nn.RMSNorm(cfg.hidden_size, eps=cfg.norm_eps)
        self.mlp: nn.Module = MoE(cfg, cfg.moe) if is_moe and cfg.moe else SwiGLU(cfg.hidden_size, cfg.ffn_hidden_size)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        x = x + self.self_attention(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.pre_mlp_layernorm(x))


class Decoder(nn.Module):
    def __init__(self, cfg: ProxyConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(TransformerLayer(cfg, is_moe) for is_moe in cfg.moe_layers)
        self.final_layernorm = nn.RMSNorm(cfg.hidden_size, eps=cfg.norm_eps)


class Embedding(nn.Module):
    def __init__(self, cfg: ProxyConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab, cfg.hidden_size)


class GPT(nn.Module):
    """Decoder-only LM. `forward(input_ids, labels)` returns per-token cross-entropy [b, s] (nats) and
    the MoE balancing loss (already scaled by its coefficient; 0 for dense models or in eval)."""

    def __init__(self, cfg: ProxyConfig) -> None:
        super().__init__()
        if cfg.mla is not None:
            raise ConfigError("multi-latent attention is built by the Megatron backend only", where="proxy.mla")
        self.cfg = cfg
        self.embedding = Embedding(cfg)
        self.decoder = Decoder(cfg)
        self.output_layer = None if cfg.tie_embeddings else nn.Linear(cfg.hidden_size, cfg.vocab, bias=False)
        cos, sin = rope_tables(cfg.seq_len, cfg.head_dim, cfg.rope_base)
        self.rope_cos: Tensor
        self.rope_sin: Tensor
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Megatron's initialisation: N(0, std) everywhere, N(0, std / sqrt(2 * layers)) for the two
        projections that write into the residual stream (linear_proj, linear_fc2); norms at 1."""
        std = self.cfg.init_std
        out_std = std / math.sqrt(2.0 * self.cfg.num_layers)
        for name, p in self.named_parameters():
            if p.dim() == 1:
                nn.init.ones_(p)
            elif name.endswith(("linear_proj.weight", "linear_fc2.weight")):
                nn.init.normal_(p, 0.0, out_std)
            else:
                nn.init.normal_(p, 0.0, std)

    def moe_layers(self) -> list[MoE]:
        return [m for m in self.modules() if isinstance(m, MoE)]

    def forward(self, input_ids: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor]:
        s = input_ids.shape[1]
        x = self.embedding.word_embeddings(input_ids)
        cos, sin = self.rope_cos[:s], self.rope_sin[:s]
        for layer in self.decoder.layers:
            x = layer(x, cos, sin)
        x = self.decoder.final_layernorm(x)
        weight = self.embedding.word_embeddings.weight if self.output_layer is None else self.output_layer.weight
        logits = F.linear(x, weight)
        aux = sum((m.aux_loss for m in self.moe_layers() if m.aux_loss is not None), x.new_zeros(()))
        if labels is None:
            return logits, aux
        loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), labels.reshape(-1), reduction="none")
        return loss.view(labels.shape), aux

    @torch.no_grad()
    def update_expert_bias(self, group: torch.distributed.ProcessGroup | None = None) -> None:
        """DeepSeek-V3's aux-loss-free balancing, as Megatron's finalize_model_grads does it after each
        global batch: counts summed over data-parallel ranks, bias moved by +-rate towards the mean."""
        routers = [m.router for m in self.moe_layers() if m.router.expert_bias is not None]
        if not routers:
            return
        counts = torch.stack([r.local_tokens_per_expert for r in routers if r.local_tokens_per_expert is not None])
        if group is not None or (torch.distributed.is_available() and torch.distributed.is_initialized()):
            torch.distributed.all_reduce(counts, group=group)
        for router, count in zip(routers, counts):
            assert router.expert_bias is not None and router.local_tokens_per_expert is not None
            offset = count.mean() - count
            router.expert_bias += torch.sign(offset) * router.moe.bias_update_rate
            router.local_tokens_per_expert.zero_()
