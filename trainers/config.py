"""`ProxyConfig`: the shape of one proxy model, dense or MoE, validated at construction.

One config drives every backend: the Megatron-Core backend turns it into a `TransformerConfig` and a
`GPTModel`, the DeepSpeed backend into the plain PyTorch model in `trainers.models.gpt`, and both
models hold exactly the parameters counted by `param_counts()` (a test checks it). The model family
is the one OpenSeek and DeepSeek-V3 use: pre-norm RMSNorm blocks, RoPE, grouped-query attention (or
MLA on GPU), SwiGLU MLPs without biases; MoE layers add routed experts, an optional shared expert, a
softmax or sigmoid router (sigmoid with an aux-loss-free expert bias), group-limited routing and a
load-balancing loss, with the first `first_k_dense` layers kept dense.

`vocab_size` is normally left `None` and taken from the corpus tokenizer when training starts
(`resolve_vocab`), so a preset fits any prepared corpus.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from mixture_search.keys import content_key
from trainers.errors import ConfigError

ScoreFunction = Literal["softmax", "sigmoid"]
AuxLossType = Literal["aux_loss", "seq_aux_loss"]

#: vocabulary assumed by `--dry-run` and FLOP estimates when no corpus is given (the demo tokenizer's)
DEFAULT_VOCAB = 8192


def _positive(obj: Any, where: str, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"must be a positive integer, got {value!r}", where=f"{where}.{name}")


@dataclass(frozen=True)
class MoEConfig:
    """Mixture-of-experts layers (Megatron-Core `moe_*` options, named as in DeepSeek-V3's description)."""

    num_experts: int
    top_k: int
    expert_ffn_hidden_size: int
    shared_expert_ffn_hidden_size: int = 0  # 0: no shared expert
    score_function: ScoreFunction = "softmax"
    expert_bias: bool = False  # aux-loss-free balancing (DeepSeek-V3); needs the sigmoid score function
    bias_update_rate: float = 1e-3
    num_groups: int | None = None  # group-limited routing: experts split into groups ...
    group_top_k: int | None = None  # ... and each token picks experts from this many groups
    first_k_dense: int = 0  # leading layers with a dense MLP instead of experts
    aux_loss_type: AuxLossType = "aux_loss"
    aux_loss_coeff: float = 0.0
    topk_scaling_factor: float | None = None

    def validate(self, where: str = "moe") -> None:
        _positive(self, where, "num_experts", "top_k", "expert_ffn_hidden_size")
        if self.top_k > self.num_experts:
            raise ConfigError(f"top_k {self.top_k} exceeds num_experts {self.num_experts}", where=f"{where}.top_k")
        if self.shared_expert_ffn_hidden_size < 0:
            raise ConfigError("must be >= 0", where=f"{where}.shared_expert_ffn_hidden_size")
        if self.score_function not in ("softmax", "sigmoid"):
            raise ConfigError(
                f"{self.score_function!r} is not one of softmax, sigmoid", where=f"{where}.score_function"
            )
        if self.expert_bias and self.score_function != "sigmoid":
            raise ConfigError("the expert bias needs score_function 'sigmoid'", where=f"{where}.expert_bias")
        if self.aux_loss_type not in ("aux_loss", "seq_aux_loss"):
            raise ConfigError(
                f"{self.aux_loss_type!r} is not one of aux_loss, seq_aux_loss", where=f"{where}.aux_loss_type"
            )
        if not 0 <= self.aux_loss_coeff < 1:
            raise ConfigError(f"{self.aux_loss_coeff!r} must be in [0, 1)", where=f"{where}.aux_loss_coeff")
        if self.bias_update_rate < 0:
            raise ConfigError("must be >= 0", where=f"{where}.bias_update_rate")
        if self.first_k_dense < 0:
            raise ConfigError("must be >= 0", where=f"{where}.first_k_dense")
        if (self.num_groups is None) != (self.group_top_k is None):
            raise ConfigError("set both num_groups and group_top_k, or neither", where=f"{where}.num_groups")
        if self.num_groups is not None and self.group_top_k is not None:
            _positive(self, where, "num_groups", "group_top_k")
            if self.num_experts % self.num_groups:
                raise ConfigError(
                    f"num_experts {self.num_experts} is not divisible by num_groups {self.num_groups}",
                    where=f"{where}.num_groups",
                )
            if self.group_top_k > self.num_groups:
                raise ConfigError("exceeds num_groups", where=f"{where}.group_top_k")
            if self.top_k % self.group_top_k or self.top_k > self.group_top_k * self.num_experts // self.num_groups:
                raise ConfigError(
                    f"top_k {self.top_k} must be a multiple of group_top_k {self.group_top_k} and fit in the chosen groups",
                    where=f"{where}.group_top_k",
                )


@dataclass(frozen=True)
class MLAConfig:
    """Multi-latent attention (DeepSeek-V2/V3, OpenSeek). Built by Megatron-Core's TransformerEngine
    spec only, so it runs on a GPU; the CPU backends refuse it with a reason."""

    kv_lora_rank: int = 512
    qk_head_dim: int = 128
    qk_pos_emb_head_dim: int = 64
    v_head_dim: int = 128
    q_lora_rank: int | None = None  # None: queries projected directly (OpenSeek-Small-v1)

    def validate(self, where: str = "mla") -> None:
        _positive(self, where, "kv_lora_rank", "qk_head_dim", "qk_pos_emb_head_dim", "v_head_dim")
        if self.q_lora_rank is not None:
            _positive(self, where, "q_lora_rank")


@dataclass(frozen=True)
class ParamCounts:
    total: int  # every parameter
    active: int  # parameters one token passes through (top-k experts only)
    embedding: int  # input embedding table (a lookup, no FLOPs)


@dataclass(frozen=True)
class ProxyConfig:
    """The shape of a proxy model. Frozen and validated: a bad field raises `ConfigError` naming it."""

    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_query_groups: int
    ffn_hidden_size: int  # the dense MLP (all layers of a dense model, the first_k_dense layers of an MoE)
    seq_len: int
    vocab_size: int | None = None  # None: the corpus tokenizer's, filled in by `resolve_vocab`
    moe: MoEConfig | None = None
    mla: MLAConfig | None = None
    qk_layernorm: bool = False
    tie_embeddings: bool = False
    rope_base: float = 10000.0
    norm_eps: float = 1e-5
    init_std: float = 0.02
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        where = f"proxy[{self.name}]"
        _positive(
            self,
            where,
            "num_layers",
            "hidden_size",
            "num_attention_heads",
            "num_query_groups",
            "ffn_hidden_size",
            "seq_len",
        )
        if self.vocab_size is not None:
            _positive(self, where, "vocab_size")
        if self.mla is None and self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_attention_heads}",
                where=f"{where}.hidden_size",
            )
        if self.num_attention_heads % self.num_query_groups:
            raise ConfigError(
                f"num_attention_heads {self.num_attention_heads} is not divisible by num_query_groups {self.num_query_groups}",
                where=f"{where}.num_query_groups",
            )
        if self.mla is None and self.head_dim % 2:
            raise ConfigError(f"head dim {self.head_dim} must be even for RoPE", where=f"{where}.hidden_size")
        if self.rope_base <= 0 or self.norm_eps <= 0 or self.init_std <= 0:
            raise ConfigError("rope_base, norm_eps and init_std must be positive", where=where)
        if self.moe is not None:
            self.moe.validate(f"{where}.moe")
            if self.moe.first_k_dense >= self.num_layers:
                raise ConfigError(
                    f"first_k_dense {self.moe.first_k_dense} leaves no MoE layer of {self.num_layers}",
                    where=f"{where}.moe.first_k_dense",
                )
        if self.mla is not None:
            self.mla.validate(f"{where}.mla")

    # -- derived shapes -----------------------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def is_moe(self) -> bool:
        return self.moe is not None

    @property
    def moe_layers(self) -> tuple[bool, ...]:
        """Per layer: True where the MLP is a mixture of experts (Megatron's `moe_layer_freq` list)."""
        k = self.moe.first_k_dense if self.moe else self.num_layers
        return tuple(i >= k for i in range(self.num_layers))

    def resolve_vocab(self, vocab_size: int) -> ProxyConfig:
        """This config with the tokenizer's vocabulary; an explicit, different size is an error."""
        if self.vocab_size is None:
            return dataclasses.replace(self, vocab_size=vocab_size)
        if self.vocab_size < vocab_size:
            raise ConfigError(
                f"vocab_size {self.vocab_size} is smaller than the tokenizer's {vocab_size}",
                where=f"proxy[{self.name}].vocab_size",
            )
        return self

    @property
    def vocab(self) -> int:
        return self.vocab_size if self.vocab_size is not None else DEFAULT_VOCAB

    def replace(self, **changes: Any) -> ProxyConfig:
        """A copy with some fields changed (validated again); unknown names raise `ConfigError`."""
        known = {f.name for f in dataclasses.fields(self)}
        for key in changes:
            if key not in known:
                raise ConfigError(f"unknown field (known: {', '.join(sorted(known))})", where=f"proxy.{key}")
        return dataclasses.replace(self, **changes)

    # -- size and cost ------------------------------------------------------------------------------
    def _attention_params(self) -> int:
        h = self.hidden_size
        if self.mla is not None:
            m, n = self.mla, self.num_attention_heads
            qk = m.qk_head_dim + m.qk_pos_emb_head_dim
            # Megatron's MLASelfAttention: the latent norms exist when qk_layernorm is set (never run here).
            norm = 1 if self.qk_layernorm else 0
            if m.q_lora_rank is None:
                q = h * n * qk
            else:
                q = h * m.q_lora_rank + norm * m.q_lora_rank + m.q_lora_rank * n * qk
            kv = h * (m.kv_lora_rank + m.qk_pos_emb_head_dim) + norm * m.kv_lora_rank
            kv += m.kv_lora_rank * n * (m.qk_head_dim + m.v_head_dim)
            return q + kv + n * m.v_head_dim * h
        d = self.head_dim
        qkv = h * d * (self.num_attention_heads + 2 * self.num_query_groups)
        out = self.num_attention_heads * d * h
        return qkv + out + (2 * d if self.qk_layernorm else 0)

    def param_counts(self) -> ParamCounts:
        """Exact parameter counts of the built model (norm weights included, no biases)."""
        h, v = self.hidden_size, self.vocab
        embedding = v * h
        total = active = embedding + h  # + final norm
        if not self.tie_embeddings:
            total += v * h
            active += v * h
        for is_moe in self.moe_layers:
            layer = 2 * h + self._attention_params()
            total += layer
            active += layer
            if not is_moe:
                total += 3 * h * self.ffn_hidden_size
                active += 3 * h * self.ffn_hidden_size
                continue
            assert self.moe is not None
            m = self.moe
            router = m.num_experts * h
            shared = 3 * h * m.shared_expert_ffn_hidden_size
            expert = 3 * h * m.expert_ffn_hidden_size
            total += router + shared + m.num_experts * expert
            active += router + shared + m.top_k * expert
        return ParamCounts(total=total, active=active, embedding=embedding)

    def flops_per_token(self) -> int:
        """Training FLOPs per token (forward + backward = 3x forward; no recomputation).

        Matmuls: 2 FLOPs per active weight (the embedding lookup has none, the output layer and router
        count). Attention scores and the weighted sum: causal, so on average a token attends to
        seq_len / 2 positions, 2 * heads * (qk_dim + v_dim) * seq_len / 2 FLOPs per layer.
        """
        counts = self.param_counts()
        norms = self.hidden_size * (2 * self.num_layers + 1)
        matmul = counts.active - counts.embedding - norms
        if self.tie_embeddings:
            matmul += counts.embedding  # the output layer reuses the table as a matmul
        if self.mla is not None:
            qk = self.mla.qk_head_dim + self.mla.qk_pos_emb_head_dim
            vd = self.mla.v_head_dim
        else:
            qk = vd = self.head_dim
        attention = self.num_layers * self.num_attention_heads * (qk + vd) * self.seq_len
        return 3 * (2 * matmul + attention)

    # -- serialisation ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "proxy") -> ProxyConfig:
        """Inverse of `to_dict`; unknown or mistyped fields raise `ConfigError` naming them."""
        if not isinstance(data, Mapping):
            raise ConfigError("must be a mapping of ProxyConfig fields", where=where)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = [k for k in data if k not in fields]
        if unknown:
            raise ConfigError(f"unknown field (known: {', '.join(fields)})", where=f"{where}.{unknown[0]}")
        kwargs = dict(data)
        for key, sub in (("moe", MoEConfig), ("mla", MLAConfig)):
            value = kwargs.get(key)
            if isinstance(value, Mapping):
                sub_fields = {f.name for f in dataclasses.fields(sub)}
                bad = [k for k in value if k not in sub_fields]
                if bad:
                    raise ConfigError(
                        f"unknown field (known: {', '.join(sub_fields)})", where=f"{where}.{key}.{bad[0]}"
                    )
                kwargs[key] = sub(**value)
            elif value is not None and not isinstance(value, sub):
                raise ConfigError(f"must be a mapping, got {type(value).__name__}", where=f"{where}.{key}")
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ConfigError(" ".join(str(exc).split()), where=where) from None

    @property
    def key(self) -> str:
        """Content key of the shape (the name is a label and does not enter it)."""
        payload = {k: v for k, v in self.to_dict().items() if k != "name"}
        return content_key(payload)

    def describe(self) -> str:
        """One line: name, shape, total/active parameters and FLOPs per token."""
        c = self.param_counts()
        kind = "dense"
        if self.moe is not None:
            kind = f"MoE {self.moe.num_experts}x top-{self.moe.top_k}"
            if self.moe.shared_expert_ffn_hidden_size:
                kind += " + shared"
        attn = "MLA" if self.mla else f"GQA {self.num_attention_heads}/{self.num_query_groups}"
        return (
            f"{self.name}: {kind}, {self.num_layers} layers, hidden {self.hidden_size}, {attn}, seq {self.seq_len}, "
            f"vocab {self.vocab}: {c.total / 1e6:.2f}M params ({c.active / 1e6:.2f}M active), "
            f"{self.flops_per_token() / 1e6:.1f} MFLOPs/token"
        )
