"""The two backends train the same model: megatron-core's GPTModel and the plain PyTorch GPT share
parameter names and layouts, and with the same weights compute the same losses and gradients."""

from __future__ import annotations

import pytest
import torch

from trainers.backends.megatron import MegatronBackend
from trainers.budget import TrainBudget
from trainers.config import MoEConfig, ProxyConfig
from trainers.distributed import Parallelism, process_group
from trainers.models.gpt import GPT
from trainers.presets import moe_cpu, tiny_cpu

SOFTMAX_MOE = MoEConfig(
    num_experts=4,
    top_k=2,
    expert_ffn_hidden_size=32,
    score_function="softmax",
    aux_loss_type="aux_loss",
    aux_loss_coeff=1e-2,
)

CONFIGS = {
    "dense": tiny_cpu(seq_len=32, vocab_size=256),
    "deepseek_moe": moe_cpu(seq_len=32, vocab_size=256),
    "softmax_moe_qknorm_tied": moe_cpu(
        seq_len=32, vocab_size=256, qk_layernorm=True, tie_embeddings=True, moe=SOFTMAX_MOE
    ),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_megatron_and_plain_models_match(name: str) -> None:
    cfg: ProxyConfig = CONFIGS[name]
    tokens = torch.randint(0, 256, (2, 33), generator=torch.Generator().manual_seed(1))
    with process_group() as world:
        engine = MegatronBackend().build(cfg, TrainBudget(steps=1, micro_batch=2, global_batch=2), Parallelism(), world)
        try:
            meg = engine.module
            with torch.no_grad():  # a non-zero expert bias, so biased routing is compared too
                for key, buf in meg.named_buffers():
                    if key.endswith("expert_bias"):
                        buf.copy_(torch.randn(buf.shape, generator=torch.Generator().manual_seed(2)) * 0.05)
            state = {k: v for k, v in meg.state_dict().items() if not k.endswith("_extra_state")}
            plain = GPT(cfg)
            plain.load_state_dict(state, strict=True)  # same names, same shapes, nothing left over

            # evaluation: per-token losses
            expected = engine.token_losses(tokens)
            plain.eval()
            with torch.no_grad():
                got, _ = plain(tokens[:, :-1], tokens[:, 1:])
            torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-5)

            # training: LM loss + balancing loss, and every gradient
            from megatron.core.transformer.moe.moe_utils import MoEAuxLossAutoScaler

            MoEAuxLossAutoScaler.set_loss_scale(torch.tensor(1.0))
            meg.train()
            positions = torch.arange(32).unsqueeze(0).expand(2, -1)
            meg(tokens[:, :-1], positions, None, labels=tokens[:, 1:]).float().mean().backward()
            plain.train()
            loss, aux = plain(tokens[:, :-1], tokens[:, 1:])
            (loss.mean() + aux).backward()
            if cfg.moe is not None:
                assert float(aux.detach()) > 0
            grads = dict(meg.named_parameters())
            for key, p in plain.named_parameters():
                assert p.grad is not None and grads[key].grad is not None, key
                torch.testing.assert_close(p.grad, grads[key].grad, atol=1e-5, rtol=1e-4, msg=key)
        finally:
            engine.close()


def test_plain_model_has_megatron_names() -> None:
    names = set(GPT(moe_cpu(seq_len=16, vocab_size=64)).state_dict())
    assert "embedding.word_embeddings.weight" in names and "output_layer.weight" in names
    assert "decoder.layers.0.mlp.linear_fc1.weight" in names  # first layer dense
    assert "decoder.layers.1.mlp.router.expert_bias" in names
    assert "decoder.layers.1.mlp.experts.local_experts.7.linear_fc2.weight" in names
    assert "decoder.layers.1.mlp.shared_experts.linear_fc1.weight" in names
    assert "decoder.layers.3.self_attention.linear_qkv.weight" in names


def test_a_deeper_moe_model_after_a_shallower_one_in_the_same_process() -> None:
    """Megatron's aux-loss tracker is process-wide and sized by the first MoE model; closing an engine
    must empty it, or a deeper model trained later in the process (a validate target after its
    proxies, a long-lived worker) indexes past it."""
    tokens = torch.randint(0, 256, (2, 33), generator=torch.Generator().manual_seed(1))
    budget = TrainBudget(steps=1, micro_batch=2, global_batch=2)
    for layers in (2, 4):
        with process_group() as world:
            engine = MegatronBackend().build(
                moe_cpu(num_layers=layers, seq_len=32, vocab_size=256), budget, Parallelism(), world
            )
            try:
                stats = engine.train_step([tokens], 1e-3)
            finally:
                engine.close()
        assert stats.aux_loss > 0
