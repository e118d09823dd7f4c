"""The Megatron-Core backend: a real megatron-core `GPTModel` (dense or MoE), checkpoints with
`dist_checkpointing`, tensor/expert/data parallel under torch.distributed.

Two device paths share the model construction and the training step's structure:

- **CPU** (what runs and is tested here): local layer spec with a scaled-dot-product core attention
  (`SDPAttention`, plugged in through Megatron's `ModuleSpec`, the extension point TE uses), gloo,
  the allgather token dispatcher, a plain `torch.optim.AdamW`, gradient all-reduce and clipping done
  here (Megatron's DDP and optimizer allocate CUDA buffers), and the CUDA shim in
  `megatron_cpu_shim` (applied only on CPU). Optimizer state is checkpointed through Megatron's own
  `optim_state_to_sharding_state`, so model and optimizer reshard together.
- **GPU** (written, not run here: this machine has no GPU): TransformerEngine layer spec when TE is
  installed, MLA when the config asks, bf16 parameters, Megatron's `DistributedDataParallel`,
  `get_megatron_optimizer` (distributed optimizer) and `finalize_model_grads`, NCCL, the alltoall
  dispatcher under expert parallelism.

megatron-core and TransformerEngine are imported inside the functions that use them (each says
`lazy`): importing this module registers the backend without them, so a missing or broken install
takes out this backend alone, and code that never trains does not pay their import.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.distributed as dist
import torch.nn.functional as F

from trainers.backends import megatron_cpu_shim
from trainers.backends.base import StepStats, register
from trainers.budget import TrainBudget
from trainers.config import ProxyConfig
from trainers.distributed import Parallelism, World


def _have_te() -> bool:
    try:
        # lazy: TransformerEngine (see the module docstring); it is asked for only on a GPU
        import transformer_engine  # noqa: F401
    except Exception:  # TE raises more than ImportError when its CUDA libraries are missing
        return False
    return True


class MegatronBackend:
    name: ClassVar[str] = "megatron"

    @property
    def options(self) -> dict[str, int | str]:
        return {}

    def unsupported(self, proxy: ProxyConfig, parallel: Parallelism, device: str) -> str | None:
        try:
            # lazy: megatron-core (see the module docstring)
            import megatron.core  # noqa: F401
        except Exception as exc:
            return f"megatron-core does not import ({type(exc).__name__}: {exc})"
        if proxy.mla is not None and (device != "cuda" or not _have_te()):
            return "multi-latent attention needs TransformerEngine on a CUDA GPU"
        tp, ep = parallel.tp, parallel.ep
        if proxy.num_attention_heads % tp or proxy.num_query_groups % tp:
            return f"heads {proxy.num_attention_heads} and query groups {proxy.num_query_groups} must divide by tp {tp}"
        if proxy.ffn_hidden_size % tp or proxy.vocab % tp:
            return f"ffn_hidden_size and vocab_size must divide by tp {tp}"
        if ep > 1 and proxy.moe is None:
            return "expert parallelism needs an MoE config"
        if proxy.moe is not None:
            if proxy.moe.num_experts % ep:
                return f"num_experts {proxy.moe.num_experts} must divide by ep {ep}"
            if proxy.moe.expert_ffn_hidden_size % tp or proxy.moe.shared_expert_ffn_hidden_size % tp:
                return f"expert FFN sizes must divide by tp {tp}"
        return None

    def build(self, proxy: ProxyConfig, budget: TrainBudget, parallel: Parallelism, world: World) -> MegatronEngine:
        return MegatronEngine(proxy, budget, parallel, world)


def transformer_config(proxy: ProxyConfig, *, cuda: bool, tp: int, ep: int) -> Any:
    """The Megatron `TransformerConfig` (or `MLATransformerConfig`) for a proxy shape."""
    # lazy: megatron-core (see the module docstring)
    from megatron.core.transformer.transformer_config import MLATransformerConfig, TransformerConfig

    kw: dict[str, Any] = dict(
        num_layers=proxy.num_layers,
        hidden_size=proxy.hidden_size,
        num_attention_heads=proxy.num_attention_heads,
        num_query_groups=proxy.num_query_groups,
        ffn_hidden_size=proxy.ffn_hidden_size,
        kv_channels=proxy.head_dim if proxy.mla is None else None,
        tensor_model_parallel_size=tp,
        expert_model_parallel_size=ep,
        normalization="RMSNorm",
        layernorm_epsilon=proxy.norm_eps,
        qk_layernorm=proxy.qk_layernorm,
        gated_linear_unit=True,
        activation_func=F.silu,
        add_bias_linear=False,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        init_method_std=proxy.init_std,
        attention_softmax_in_fp32=True,
        # fusions need apex/TE kernels; TE's own modules fuse on GPU regardless
        bias_activation_fusion=False,
        bias_dropout_fusion=False,
        masked_softmax_fusion=False,
        apply_rope_fusion=False,
        persist_layer_norm=False,
        cross_entropy_loss_fusion=False,
        gradient_accumulation_fusion=False,
        cuda_graph_scope=[],  # the non-deprecated spelling of the default (no CUDA graphs are built)
    )
    if cuda:
        kw.update(bf16=True, params_dtype=torch.bfloat16, pipeline_dtype=torch.bfloat16)
    else:
        kw.update(use_cpu_initialization=True, params_dtype=torch.float32, pipeline_dtype=torch.float32)
    if proxy.moe is not None:
        m = proxy.moe
        kw.update(
            num_moe_experts=m.num_experts,
            moe_router_topk=m.top_k,
            moe_ffn_hidden_size=m.expert_ffn_hidden_size,
            moe_shared_expert_intermediate_size=m.shared_expert_ffn_hidden_size or None,
            moe_router_score_function=m.score_function,
            moe_router_enable_expert_bias=m.expert_bias,
            moe_router_bias_update_rate=m.bias_update_rate,
            moe_router_num_groups=m.num_groups,
            moe_router_group_topk=m.group_top_k,
            moe_layer_freq=[int(x) for x in proxy.moe_layers],
            moe_router_load_balancing_type=m.aux_loss_type if m.aux_loss_coeff > 0 else "none",
            moe_aux_loss_coeff=m.aux_loss_coeff,
            moe_router_topk_scaling_factor=m.topk_scaling_factor,
            moe_router_dtype="fp32",
            moe_token_dispatcher_type="alltoall" if (cuda and ep > 1) else "allgather",
            moe_grouped_gemm=cuda and _have_te(),
        )
    if proxy.mla is None:
        return TransformerConfig(**kw)
    mla = proxy.mla
    kw.pop("kv_channels")
    return MLATransformerConfig(
        **kw,
        q_lora_rank=mla.q_lora_rank,
        kv_lora_rank=mla.kv_lora_rank,
        qk_head_dim=mla.qk_head_dim,
        qk_pos_emb_head_dim=mla.qk_pos_emb_head_dim,
        v_head_dim=mla.v_head_dim,
        rope_type="rope",
        rotary_base=proxy.rope_base,
    )


def layer_spec(config: Any, *, use_te: bool) -> Any:
    """Per-layer specs (dense and MoE layers per `moe_layer_freq`). Without TE, the local spec with
    its core attention swapped for `SDPAttention`."""
    # lazy: megatron-core (see the module docstring)
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_decoder_block_spec

    block = get_gpt_decoder_block_spec(config, use_transformer_engine=use_te, normalization="RMSNorm")
    if not use_te:
        for spec in block.layer_specs:
            spec.submodules.self_attention.submodules.core_attention = _sdpa_class()
    return block


_SDPA: type | None = None


def _sdpa_class() -> type:
    """Built lazily so importing this module does not import megatron."""
    global _SDPA
    if _SDPA is not None:
        return _SDPA
    # lazy: megatron-core (see the module docstring)
    from megatron.core.transformer.module import MegatronModule

    class SDPAttention(MegatronModule):
        """Megatron core-attention interface over `torch.nn.functional.scaled_dot_product_attention`
        (causal, grouped-query aware). Megatron's local `DotProductAttention` materialises the full
        score matrix with baddbmm + masked softmax; PyTorch's fused kernel is what a plain PyTorch
        model gets, so the two backends compare like for like."""

        def __init__(self, config: Any, layer_number: int, attn_mask_type: Any, attention_type: str, **_: Any) -> None:
            super().__init__(config=config)
            tp = config.tensor_model_parallel_size
            self.heads = config.num_attention_heads // tp
            self.groups = config.num_query_groups // tp
            self.scale = config.softmax_scale

        def forward(
            self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *_: Any, **__: Any
        ) -> torch.Tensor:
            # [s, b, n, d] -> [b, n, s, d]
            q, k, v = (t.permute(1, 2, 0, 3) for t in (query, key, value))
            out = F.scaled_dot_product_attention(
                q, k, v, is_causal=True, scale=self.scale, enable_gqa=self.heads != self.groups
            )
            s, b = query.shape[0], query.shape[1]
            return out.permute(2, 0, 1, 3).reshape(s, b, self.heads * q.shape[-1])

    _SDPA = SDPAttention
    return _SDPA


class MegatronEngine:
    def __init__(self, proxy: ProxyConfig, budget: TrainBudget, parallel: Parallelism, world: World) -> None:
        # lazy: megatron-core (see the module docstring)
        from megatron.core import parallel_state, tensor_parallel
        from megatron.core.models.gpt import GPTModel

        self.proxy, self.budget = proxy, budget
        self.cuda = world.device.type == "cuda"
        self.device = world.device
        if not self.cuda:
            megatron_cpu_shim.apply()
        parallel_state.initialize_model_parallel(
            tensor_model_parallel_size=parallel.tp, expert_model_parallel_size=parallel.ep
        )
        self._ps = parallel_state
        self.dp_rank = parallel_state.get_data_parallel_rank()
        self.dp_size = parallel_state.get_data_parallel_world_size()
        self.dp_group = parallel_state.get_data_parallel_group()
        torch.manual_seed(budget.seed)
        tp_rank = parallel_state.get_tensor_model_parallel_rank()
        ep_rank = parallel_state.get_expert_model_parallel_rank()
        if self.cuda:
            tensor_parallel.model_parallel_cuda_manual_seed(budget.seed)
        else:
            megatron_cpu_shim.seed_streams(
                budget.seed, tp_rank, ep_rank, parallel_state.get_expert_tensor_parallel_rank()
            )
        use_te = self.cuda and _have_te()
        self.config = transformer_config(proxy, cuda=self.cuda, tp=parallel.tp, ep=parallel.ep)
        model = GPTModel(
            config=self.config,
            transformer_layer_spec=layer_spec(self.config, use_te=use_te),
            vocab_size=proxy.vocab,
            max_sequence_length=proxy.seq_len,
            position_embedding_type="rope",
            rotary_base=int(proxy.rope_base),
            share_embeddings_and_output_weights=proxy.tie_embeddings,
        )
        self.module = model.to(self.device)
        if self.cuda:
            self._build_gpu_optimizer()
        else:
            self.model = self.module
            # no weight decay on norms (1-D), as Megatron's optimizer groups them
            decay = [p for p in self.module.parameters() if p.dim() >= 2]
            no_decay = [p for p in self.module.parameters() if p.dim() < 2]
            self.optimizer: Any = torch.optim.AdamW(
                [
                    {"params": decay, "weight_decay": budget.weight_decay},
                    {"params": no_decay, "weight_decay": 0.0},
                ],
                lr=budget.lr,
                betas=(budget.adam_beta1, budget.adam_beta2),
                eps=1e-8,
                foreach=True,
            )
        s = proxy.seq_len
        self._positions = torch.arange(s, device=self.device).unsqueeze(0)

    # -- GPU path (not run on this machine) ---------------------------------------------------------
    def _build_gpu_optimizer(self) -> None:
        # lazy: megatron-core (see the module docstring)
        from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
        from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer

        b = self.budget
        ddp_config = DistributedDataParallelConfig(
            grad_reduce_in_fp32=True, overlap_grad_reduce=False, use_distributed_optimizer=True
        )
        self.model = DistributedDataParallel(config=self.config, ddp_config=ddp_config, module=self.module)
        opt_config = OptimizerConfig(
            optimizer="adam",
            lr=b.lr,
            min_lr=b.min_lr,
            weight_decay=b.weight_decay,
            adam_beta1=b.adam_beta1,
            adam_beta2=b.adam_beta2,
            adam_eps=1e-8,
            bf16=True,
            clip_grad=b.grad_clip,
            use_distributed_optimizer=True,
        )
        self.optimizer = get_megatron_optimizer(opt_config, [self.model])

    # -- training -----------------------------------------------------------------------------------
    def _forward(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens.to(self.device, non_blocking=True)
        inputs, labels = tokens[:, :-1], tokens[:, 1:]
        positions = self._positions[:, : inputs.shape[1]].expand(inputs.shape[0], -1)
        return self.model(inputs, positions, None, labels=labels)  # [b, s] nats

    def train_step(self, micro_batches: Sequence[torch.Tensor], lr: float) -> StepStats:
        # lazy: megatron-core (see the module docstring)
        from megatron.core.transformer.moe.moe_utils import MoEAuxLossAutoScaler

        self.model.train()
        n = len(micro_batches)
        # Megatron scales the balancing-loss gradient like the LM loss: by 1 / micro-batches.
        MoEAuxLossAutoScaler.set_loss_scale(torch.tensor(1.0 / n, device=self.device))
        if self.cuda:
            self.model.zero_grad_buffer()  # Megatron DDP keeps gradients in its own contiguous buffers
            self.optimizer.zero_grad()
        else:
            self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        for tokens in micro_batches:
            loss = self._forward(tokens).float().mean()
            (loss / n).backward()
            total += loss.detach()
        aux = self._aux_loss(n)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.cuda:
            from megatron.core.distributed import finalize_model_grads  # megatron: the CUDA path only

            finalize_model_grads([self.model])
            _, grad_norm, _ = self.optimizer.step()
            grad_norm = float(grad_norm or 0.0)
        else:
            self._sync_grads()
            self._update_expert_bias()
            grad_norm = self._clip_grads(self.budget.grad_clip)
            self.optimizer.step()
        mean = total / n
        dist.all_reduce(mean, group=self._ps.get_data_parallel_group())
        return StepStats(loss=float(mean) / self.dp_size, aux_loss=aux, grad_norm=grad_norm)

    def _aux_loss(self, n: int) -> float:
        if self.proxy.moe is None or self.proxy.moe.aux_loss_coeff == 0:
            return 0.0
        # lazy: megatron-core (see the module docstring)
        from megatron.core.transformer.moe.moe_utils import clear_aux_losses_tracker, get_moe_layer_wise_logging_tracker

        tracker = get_moe_layer_wise_logging_tracker()
        value = sum(float(v["values"].sum()) for v in tracker.values()) * self.proxy.moe.aux_loss_coeff / n
        clear_aux_losses_tracker()
        return value

    def _is_expert(self, p: torch.nn.Parameter) -> bool:
        return not getattr(p, "allreduce", True)

    def _sync_grads(self) -> None:
        """What Megatron's DDP does on GPU: sum over the data-parallel group (experts: the expert
        data-parallel group) and scale by 1 / dp, so every rank steps on the global-batch mean."""
        if self.dp_size == 1:
            return  # nothing to sum, nothing to scale
        groups = [
            (self._ps.get_data_parallel_group(), [p for p in self.module.parameters() if not self._is_expert(p)]),
            (self._ps.get_expert_data_parallel_group(), [p for p in self.module.parameters() if self._is_expert(p)]),
        ]
        for group, params in groups:
            grads = [p.grad for p in params if p.grad is not None]
            if not grads:
                continue
            flat = torch._utils._flatten_dense_tensors(grads)
            if dist.get_world_size(group) > 1:
                dist.all_reduce(flat, group=group)
            flat /= self.dp_size
            for g, synced in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads)):
                g.copy_(synced)

    def _update_expert_bias(self) -> None:
        if self.proxy.moe is None or not self.proxy.moe.expert_bias:
            return
        # lazy: megatron-core (see the module docstring)
        from megatron.core.distributed.finalize_model_grads import (
            _update_router_expert_bias,
            reset_model_temporary_tensors,
        )

        _update_router_expert_bias([self.module], self.config)
        reset_model_temporary_tensors(self.config, [self.module])

    def _clip_grads(self, max_norm: float) -> float:
        """Global gradient norm over TP/EP shards (each tensor-parallel duplicate counted once),
        as Megatron's `get_grad_norm_fp32`, then clipping by it."""
        tp_rank = self._ps.get_tensor_model_parallel_rank()
        dense, expert, grads = [], [], []
        for p in self.module.parameters():
            if p.grad is None:
                continue
            grads.append(p.grad)
            if self._is_expert(p):
                expert.append(p.grad)
            elif getattr(p, "tensor_model_parallel", False) or tp_rank == 0:
                dense.append(p.grad)
        sums = torch.zeros(2, dtype=torch.float64)
        for i, group in enumerate((dense, expert)):
            if group:
                sums[i] = torch.stack(torch._foreach_norm(group)).double().pow(2).sum()
        if self._ps.get_tensor_model_parallel_world_size() > 1:
            dist.all_reduce(sums[:1], group=self._ps.get_tensor_model_parallel_group())
        if expert and dist.get_world_size(self._ps.get_expert_tensor_and_model_parallel_group()) > 1:
            dist.all_reduce(sums[1:], group=self._ps.get_expert_tensor_and_model_parallel_group())
        norm = math.sqrt(float(sums.sum()))
        if max_norm > 0 and math.isfinite(norm):
            coeff = max_norm / (norm + 1e-6)
            if coeff < 1.0:
                torch._foreach_mul_(grads, coeff)
        return norm

    # -- evaluation ---------------------------------------------------------------------------------
    @torch.no_grad()
    def token_losses(self, tokens: torch.Tensor) -> torch.Tensor:
        self.model.eval()
        return self._forward(tokens).float().cpu()

    # -- checkpoints --------------------------------------------------------------------------------
    def _sharded_state(self, *, loading: bool = False) -> dict[str, Any]:
        # lazy: megatron-core (see the module docstring)
        from megatron.core.dist_checkpointing.optimizer import (
            get_param_id_to_sharded_param_map,
            optim_state_to_sharding_state,
        )

        model_state = self.module.sharded_state_dict()
        if self.cuda:
            return {
                "model": model_state,
                "optimizer": self.optimizer.sharded_state_dict(model_state, is_loading=loading),
            }
        _init_adam_state(self.optimizer)
        state = self.optimizer.state_dict()
        steps = {float(s["step"]) for s in state["state"].values()}
        assert len(steps) <= 1, "parameters at different optimizer steps"
        params = itertools.chain.from_iterable(g["params"] for g in self.optimizer.param_groups)
        id_map = get_param_id_to_sharded_param_map(model_state, params)
        optim_state_to_sharding_state(state, id_map, exclude_keys=("step",))
        state["state"]["common_step"] = steps.pop() if steps else 0.0
        return {"model": model_state, "optimizer": state}

    def save(self, path: Path) -> None:
        # lazy: megatron-core (see the module docstring)
        from megatron.core import dist_checkpointing

        path.mkdir(parents=True, exist_ok=True)
        dist_checkpointing.save(self._sharded_state(), str(path))

    def load(self, path: Path) -> None:
        # lazy: megatron-core (see the module docstring)
        from megatron.core import dist_checkpointing

        loaded = dist_checkpointing.load(self._sharded_state(loading=True), str(path))
        self.module.load_state_dict(loaded["model"])
        if self.cuda:
            self.optimizer.load_state_dict(loaded["optimizer"])
            return
        state = loaded["optimizer"]
        step = state["state"].pop("common_step")
        for param_state in state["state"].values():
            param_state["step"] = torch.tensor(float(step))
        self.optimizer.load_state_dict(state)

    def close(self) -> None:
        # lazy: megatron-core (see the module docstring)
        from megatron.core.transformer.moe.moe_utils import get_moe_layer_wise_logging_tracker

        # Empty, not just zero (`clear_aux_losses_tracker`): the tracker is process-wide and sized by the
        # first model's layer count, so a deeper model built later in this process would index past it.
        get_moe_layer_wise_logging_tracker().clear()
        release_process_groups()


def release_process_groups() -> None:
    """Drop every reference megatron-core keeps to this run's process groups, so that destroying the
    default group frees them. Two outlive `destroy_model_parallel` in megatron-core 0.16.1:
    - `RotaryEmbedding.forward` (and its own in `YarnRotaryEmbedding`, MLA's) is an `lru_cache` keyed by
      the module and its context-parallel group, so it keeps the last 32 models' rotary modules and
      groups alive;
    - `destroy_model_parallel` does not reset `_INTRA_PARTIAL_DATA_PARALLEL_GROUP_WITH_CP` (and `_GLOO`).

    A kept group keeps its transport: on CPU a gloo loop thread that wakes 100 times a second and a TCP
    store thread; on GPU an NCCL communicator and its buffers. A process that trains one run after another
    (a Ray Tune actor reused across trials, a pool worker) gained one such group per run."""
    # lazy: megatron-core (see the module docstring)
    from megatron.core import parallel_state
    from megatron.core.models.common.embeddings.rotary_pos_embedding import RotaryEmbedding

    classes: list[type] = [RotaryEmbedding]
    while classes:  # a cache of computed frequencies: a later model recomputes its own
        cls = classes.pop()
        classes.extend(cls.__subclasses__())
        cache_clear = getattr(vars(cls).get("forward"), "cache_clear", None)
        if cache_clear is not None:
            cache_clear()
    parallel_state.destroy_model_parallel()
    for name, value in list(vars(parallel_state).items()):
        if isinstance(value, dist.ProcessGroup):  # whatever this version's destroy left set
            setattr(parallel_state, name, None)


def _init_adam_state(optimizer: torch.optim.Optimizer) -> None:
    """Create AdamW's lazily-made state (zeros at step 0) so a checkpoint can be loaded into it."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            if not optimizer.state[p]:
                optimizer.state[p] = {
                    "step": torch.tensor(0.0),
                    "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
                }


BACKEND = register(MegatronBackend())
