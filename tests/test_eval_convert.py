"""Megatron-Core -> Hugging Face conversion: logits equality for every family, and clear errors.

Models are real megatron-core `GPTModel`s built on CPU exactly as the Megatron backend builds them
(`trainers.backends.megatron`), with weights drawn large enough that logits spread over several
units (so a wrong mapping shows up far above the 1e-4 tolerance), expert biases random.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from eval.convert import convert, from_module, target_for
from eval.convert.sources import _megatron_model, _megatron_runtime
from eval.convert.tensors import TensorTaker, canonical_names
from eval.errors import ConversionError, VerificationError
from trainers.config import MLAConfig, MoEConfig, ProxyConfig
from trainers.presets import moe_cpu

TOL = 1e-4


def _proxy(name: str, **kw: Any) -> ProxyConfig:
    base: dict[str, Any] = dict(
        name=name,
        num_layers=2,
        hidden_size=64,
        num_attention_heads=4,
        num_query_groups=2,
        ffn_hidden_size=96,
        seq_len=32,
        vocab_size=160,
        init_std=0.08,
    )
    return ProxyConfig(**(base | kw))


DEEPSEEK_MOE = MoEConfig(
    num_experts=8,
    top_k=2,
    expert_ffn_hidden_size=32,
    shared_expert_ffn_hidden_size=32,
    score_function="sigmoid",
    expert_bias=True,
    num_groups=4,
    group_top_k=1,  # top_k / group_top_k == 2: groups scored by their top-2 experts, as HF does
    first_k_dense=1,
    topk_scaling_factor=2.5,
)

FAMILIES: dict[str, tuple[ProxyConfig, str]] = {
    "dense": (_proxy("dense"), "LlamaForCausalLM"),
    "dense_qknorm_tied": (_proxy("dense_qk", qk_layernorm=True, tie_embeddings=True), "Qwen3ForCausalLM"),
    "mixtral": (
        _proxy("mixtral", moe=MoEConfig(num_experts=4, top_k=2, expert_ffn_hidden_size=32)),
        "MixtralForCausalLM",
    ),
    "qwen3_moe": (
        _proxy(
            "qwen3_moe",
            num_layers=3,
            qk_layernorm=True,
            moe=MoEConfig(num_experts=4, top_k=2, expert_ffn_hidden_size=32, first_k_dense=1),
        ),
        "Qwen3MoeForCausalLM",
    ),
    "deepseek_moe": (_proxy("deepseek_moe", num_layers=3, moe=DEEPSEEK_MOE), "Glm4MoeForCausalLM"),
    # the moe_cpu preset's routing: 2 of 4 groups for top-2, which picks exactly the plain top-2
    "moe_cpu_preset": (moe_cpu(vocab_size=160, seq_len=32, hidden_size=64, init_std=0.08), "Glm4MoeForCausalLM"),
    "deepseek_moe_qknorm_top1": (
        _proxy(
            "deepseek_top1",
            qk_layernorm=True,
            tie_embeddings=True,
            moe=MoEConfig(
                num_experts=4, top_k=1, expert_ffn_hidden_size=32, score_function="sigmoid", expert_bias=True
            ),
        ),
        "Glm4MoeForCausalLM",
    ),
}


@pytest.fixture(scope="module")
def megatron() -> Iterator[None]:
    with _megatron_runtime():
        yield


def _randomise_buffers(model: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(7)
    for name, buf in model.named_buffers():
        if name.endswith("expert_bias"):
            buf.copy_(torch.randn(buf.shape, generator=g) * 0.05)


def _megatron_source(proxy: ProxyConfig) -> Any:
    torch.manual_seed(0)
    model = _megatron_model(proxy)
    _randomise_buffers(model)
    return from_module(model, proxy, origin=f"megatron:{proxy.name}")


@pytest.mark.parametrize("family", list(FAMILIES))
def test_megatron_families_convert_with_equal_logits(family: str, megatron: None, tmp_path: Path) -> None:
    proxy, architecture = FAMILIES[family]
    source = _megatron_source(proxy)
    assert source.backend == "megatron"
    assert source.reference.std() > 0.2, "logits too flat for the check to mean anything"
    report = convert(source, tmp_path / "hf")
    assert report.architecture == architecture
    assert report.verified and report.max_abs_diff is not None and report.max_abs_diff <= TOL
    written = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert written["architectures"] == [architecture]
    stored = json.loads((tmp_path / "hf" / "conversion.json").read_text())
    assert stored["max_abs_diff"] == report.max_abs_diff and stored["fingerprint"] == source.fingerprint
    assert (tmp_path / "hf" / "model.safetensors").exists()
    assert not list(tmp_path.glob(".hf.tmp-*")), "temporary folder left behind"


@pytest.mark.parametrize("q_lora_rank", [None, 24])
def test_mla_deepseek_v3_converts_with_equal_logits(q_lora_rank: int | None, megatron: None, tmp_path: Path) -> None:
    """MLA is trained on GPU with TransformerEngine; the converter builds Megatron's own
    MLASelfAttention without TE (local spec, SDPA core attention sized by the value head), so the
    mapping is checked here on CPU with query/key and value head sizes that differ."""
    proxy = _proxy(
        "mla",
        num_query_groups=4,
        qk_layernorm=True,
        norm_eps=1e-6,  # DeepSeek-V3's latent norms use 1e-6
        tie_embeddings=True,
        mla=MLAConfig(kv_lora_rank=16, qk_head_dim=16, qk_pos_emb_head_dim=8, v_head_dim=12, q_lora_rank=q_lora_rank),
        moe=MoEConfig(
            num_experts=4,
            top_k=2,
            expert_ffn_hidden_size=16,
            shared_expert_ffn_hidden_size=16,
            score_function="sigmoid",
            expert_bias=True,
            first_k_dense=1,
        ),
    )
    source = _megatron_source(proxy)
    assert source.reference.std() > 0.2
    assert "decoder.layers.0.self_attention.linear_kv_up_proj.weight" in source.tensors
    report = convert(source, tmp_path / "hf")
    assert report.architecture == "DeepseekV3ForCausalLM"
    assert report.max_abs_diff is not None and report.max_abs_diff <= TOL


def test_plain_model_of_the_deepspeed_backend_converts(tmp_path: Path) -> None:
    from trainers.models.gpt import GPT

    proxy = FAMILIES["deepseek_moe"][0]
    torch.manual_seed(1)
    model = GPT(proxy)
    _randomise_buffers(model)
    report = convert(from_module(model, proxy), tmp_path / "hf")
    assert (
        report.architecture == "Glm4MoeForCausalLM" and report.max_abs_diff is not None and report.max_abs_diff <= TOL
    )


def test_a_wrong_mapping_is_caught_and_nothing_is_written(megatron: None, tmp_path: Path) -> None:
    """Swap two query heads inside the fused QKV after the reference was computed: the converted
    model no longer computes the source's function, so verification must fail."""
    proxy = FAMILIES["dense"][0]
    source = _megatron_source(proxy)
    name = "decoder.layers.0.self_attention.linear_qkv.weight"
    qkv = source.tensors[name].clone()
    d = proxy.head_dim
    qkv[0:d], qkv[d : 2 * d] = qkv[d : 2 * d].clone(), qkv[0:d].clone()
    source.tensors[name] = qkv
    with pytest.raises(VerificationError, match=r"logits differ .* by [0-9.e-]+ \(tolerance 0.0001\)"):
        convert(source, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
    assert not list(tmp_path.iterdir()), "a failed conversion left files behind"


def test_rerun_reuses_and_new_weights_reconvert(megatron: None, tmp_path: Path) -> None:
    proxy = FAMILIES["dense"][0]
    source = _megatron_source(proxy)
    first = convert(source, tmp_path / "hf")
    again = convert(source, tmp_path / "hf")
    assert again.reused and again.fingerprint == first.fingerprint
    tensors = dict(source.tensors)
    tensors["decoder.final_layernorm.weight"] = tensors["decoder.final_layernorm.weight"] * 1.5
    with torch.no_grad():
        from trainers.models.gpt import GPT

        plain = GPT(proxy)
        plain.load_state_dict(tensors)
    changed = convert(from_module(plain, proxy), tmp_path / "hf")
    assert not changed.reused and changed.fingerprint != first.fingerprint
    assert json.loads((tmp_path / "hf" / "conversion.json").read_text())["fingerprint"] == changed.fingerprint


def test_checkpoint_of_another_shape_names_the_tensor() -> None:
    small, big = _proxy("a"), _proxy("b", hidden_size=96)
    from trainers.models.gpt import GPT

    tensors = canonical_names(GPT(small).state_dict())
    with pytest.raises(
        ConversionError, match=r"embedding.word_embeddings.weight has shape \[160, 64\], the config implies \[160, 96\]"
    ):
        target_for(big).weights(big, TensorTaker(tensors, where="ckpt"))
    deeper = _proxy("c", num_layers=1)
    with pytest.raises(ConversionError, match=r"decoder.layers.1.* has no place in the model"):
        target_for(deeper).weights(deeper, TensorTaker(tensors, where="ckpt"))


def test_unconvertible_routing_gives_the_reason() -> None:
    # groups scored by their top-4 experts (top_k 8 / group_top_k 2): every HF class scores by the top 2
    moe = MoEConfig(
        num_experts=16, top_k=8, expert_ffn_hidden_size=32, score_function="sigmoid", num_groups=4, group_top_k=2
    )
    with pytest.raises(ConversionError, match=r"Glm4MoeForCausalLM: it scores expert groups by their top 4 experts"):
        target_for(_proxy("g", moe=moe))
    shared_softmax = MoEConfig(num_experts=4, top_k=2, expert_ffn_hidden_size=32, shared_expert_ffn_hidden_size=32)
    with pytest.raises(ConversionError, match="MixtralForCausalLM: it has a shared expert"):
        target_for(_proxy("s", moe=shared_softmax))
    with pytest.raises(ConversionError, match="LlamaForCausalLM cannot compute this proxy: it is a mixture of experts"):
        target_for(_proxy("m", moe=DEEPSEEK_MOE), "llama")


def test_group_routing_that_changes_nothing_is_recognised() -> None:
    """Picking as many groups as experts (groups scored by their best expert) never excludes one of
    the plain top-k experts; checked here on random scores with Megatron's own routing function."""
    from megatron.core.transformer.moe.moe_utils import group_limited_topk

    from eval.convert.targets import group_routing

    g = torch.Generator().manual_seed(0)
    for experts, groups, top_k in ((8, 4, 2), (16, 4, 3), (64, 8, 6)):
        scores = torch.rand(500, experts, generator=g)
        _, grouped = group_limited_topk(scores, top_k, 500, experts, groups, top_k)
        plain = torch.topk(scores, top_k, dim=-1).indices
        assert torch.equal(grouped.sort(dim=-1).values, plain.sort(dim=-1).values)
        moe = MoEConfig(
            num_experts=experts, top_k=top_k, expert_ffn_hidden_size=8, num_groups=groups, group_top_k=top_k
        )
        assert group_routing(moe) is None
    assert group_routing(DEEPSEEK_MOE) == (4, 1)


def test_te_spec_names_fold_into_local_names() -> None:
    t = torch.zeros(1)
    names = canonical_names(
        {
            "module.decoder.layers.0.self_attention.linear_qkv.layer_norm_weight": t,
            "decoder.layers.0.mlp.linear_fc1.layer_norm_weight": t,
            "decoder.layers.1.mlp.experts.linear_fc1.weight3": t,
            "decoder.layers.0.self_attention.linear_kv_up_proj.layer_norm_weight": t,
            "decoder.layers.0.self_attention.linear_qkv._extra_state": None,
        }
    )
    assert sorted(names) == [
        "decoder.layers.0.input_layernorm.weight",
        "decoder.layers.0.pre_mlp_layernorm.weight",
        "decoder.layers.0.self_attention.kv_layernorm.weight",
        "decoder.layers.1.mlp.experts.local_experts.3.linear_fc1.weight",
    ]
