"""ProxyConfig, presets, TrainBudget, TrainResult and the backend registry (no training here)."""

from __future__ import annotations

import json
import math

import pytest

from trainers import backends
from trainers.backends.deepspeed import DeepSpeedBackend
from trainers.budget import TrainBudget
from trainers.config import MoEConfig, ProxyConfig
from trainers.distributed import Parallelism
from trainers.errors import BackendUnavailable, ConfigError
from trainers.models.gpt import GPT
from trainers.presets import PRESETS, deepseek_v3_moe, moe_cpu, openseek_small_proxy, preset, tiny_cpu
from trainers.result import EvalPoint, TrainResult


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_valid_and_round_trip(name: str) -> None:
    cfg = preset(name)
    assert cfg.name == name
    again = ProxyConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.key == cfg.key
    counts = cfg.param_counts()
    assert counts.embedding < counts.active <= counts.total
    assert cfg.flops_per_token() > 6 * (counts.active - counts.embedding)  # attention adds to 6N


def test_preset_sizes_match_their_descriptions() -> None:
    assert 1.0e6 < tiny_cpu().param_counts().total < 1.3e6
    moe = moe_cpu()
    assert moe.moe_layers == (False, True, True, True)  # first layer dense
    assert 3e6 < moe.param_counts().total < 5e6
    assert 55e6 < preset("moe_60m").param_counts().total < 70e6
    osp = openseek_small_proxy(mla=True)
    assert osp.mla is not None and osp.tie_embeddings and osp.moe is not None and osp.moe.num_experts == 64
    assert openseek_small_proxy(mla=False).mla is None


@pytest.mark.parametrize("cfg", [tiny_cpu(), moe_cpu(), moe_cpu(qk_layernorm=True, tie_embeddings=True)])
def test_param_count_is_exact_for_the_built_model(cfg: ProxyConfig) -> None:
    model = GPT(cfg.replace(seq_len=32))
    assert sum(p.numel() for p in model.parameters()) == cfg.param_counts().total


def test_flops_per_token_by_hand() -> None:
    cfg = ProxyConfig(
        num_layers=1,
        hidden_size=8,
        num_attention_heads=2,
        num_query_groups=1,
        ffn_hidden_size=16,
        seq_len=10,
        vocab_size=32,
    )
    # matmuls: qkv 8*4*(2+2) + proj 8*8 + mlp 3*8*16 + output 32*8 = 128 + 64 + 384 + 256 = 832
    # attention: 1 layer * 2 heads * (4 + 4) * 10 = 160
    assert cfg.flops_per_token() == 3 * (2 * 832 + 160)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"hidden_size": 100, "num_attention_heads": 3}, "hidden_size"),
        ({"num_query_groups": 3}, "num_query_groups"),
        ({"num_layers": 0}, "num_layers"),
        ({"seq_len": -1}, "seq_len"),
        ({"vocab_size": True}, "vocab_size"),
    ],
)
def test_bad_shapes_name_the_field(changes: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=rf"proxy\[tiny_cpu\]\.{field}"):
        tiny_cpu(**changes)


@pytest.mark.parametrize(
    ("moe", "field"),
    [
        ({"top_k": 9}, "top_k"),
        ({"score_function": "softmax"}, "expert_bias"),  # expert bias needs sigmoid
        ({"num_groups": 3}, "num_groups"),  # 8 experts not divisible by 3
        ({"group_top_k": None}, "num_groups"),
        ({"aux_loss_type": "sinkhorn"}, "aux_loss_type"),
        ({"first_k_dense": 4}, "first_k_dense"),
    ],
)
def test_bad_moe_names_the_field(moe: dict, field: str) -> None:
    base = moe_cpu().moe
    assert base is not None
    with pytest.raises(ConfigError, match=rf"\.moe\.{field}"):
        moe_cpu(moe=MoEConfig(**{**base.__dict__, **moe}))


def test_from_dict_rejects_unknown_fields_and_replace_rejects_unknown_names() -> None:
    with pytest.raises(ConfigError, match=r"proxy\.hiden_size: unknown field"):
        ProxyConfig.from_dict({**tiny_cpu().to_dict(), "hiden_size": 3})
    with pytest.raises(ConfigError, match=r"proxy\.moe\.experts: unknown field"):
        ProxyConfig.from_dict({**tiny_cpu().to_dict(), "moe": {"experts": 4}})
    with pytest.raises(ConfigError, match=r"proxy\.layers"):
        tiny_cpu(layers=3)
    with pytest.raises(ConfigError, match="unknown preset"):
        preset("huge_gpu")


def test_vocab_comes_from_the_tokenizer() -> None:
    cfg = tiny_cpu()
    assert cfg.vocab_size is None and cfg.resolve_vocab(8192).vocab_size == 8192
    assert tiny_cpu(vocab_size=9000).resolve_vocab(8192).vocab_size == 9000  # larger (padded) is fine
    with pytest.raises(ConfigError, match="smaller than the tokenizer"):
        tiny_cpu(vocab_size=100).resolve_vocab(8192)


def test_budget_validation_and_steps() -> None:
    b = TrainBudget(tokens=10_000, micro_batch=2, global_batch=8)
    assert b.total_steps(seq_len=64) == math.ceil(10_000 / (8 * 64))
    assert b.micro_batches_per_rank(dp=2) == 2
    with pytest.raises(ConfigError, match="data-parallel size 3"):
        b.micro_batches_per_rank(dp=3)
    with pytest.raises(ConfigError, match=r"budget\.steps: give exactly one"):
        TrainBudget(tokens=10, steps=10)
    with pytest.raises(ConfigError, match=r"budget\.global_batch"):
        TrainBudget(steps=1, micro_batch=3, global_batch=8)
    with pytest.raises(ConfigError, match=r"budget\.schedule"):
        TrainBudget(steps=1, schedule="linear")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"budget\.lr"):
        TrainBudget(steps=1, lr=float("nan"))
    assert TrainBudget.from_dict({"tokens": "20k"}).tokens == 20_000
    assert TrainBudget(steps=3).replace(tokens=100).steps is None


@pytest.mark.parametrize("schedule", ["cosine", "wsd", "constant"])
def test_lr_schedules(schedule: str) -> None:
    b = TrainBudget(steps=100, lr=1e-3, min_lr=1e-4, warmup_steps=10, schedule=schedule)  # type: ignore[arg-type]
    lrs = [b.lr_at(s, 100) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)  # linear warmup
    assert all(1e-4 - 1e-12 <= x <= 1e-3 + 1e-12 for x in lrs)
    if schedule == "constant":
        assert lrs[50] == lrs[99] == 1e-3
    elif schedule == "cosine":
        assert lrs[99] == pytest.approx(1e-4, rel=0.01) and lrs[30] > lrs[60] > lrs[90]
    else:  # stable until the last 20%, then linear to min_lr
        assert lrs[50] == lrs[79] == 1e-3 and lrs[99] == pytest.approx(1e-4) and lrs[85] < 1e-3


def _result(**changes) -> TrainResult:
    data = dict(
        status="completed",
        backend="deepspeed",
        backend_reason="requested",
        backend_options={"zero_stage": 0},
        device="cpu",
        mixture={"a": 1.0, "b": 3.0},
        proxy=tiny_cpu().to_dict(),
        budget=TrainBudget(steps=2).to_dict(),
        data_hash="abc",
        run_dir="/tmp/x",
        checkpoint=None,
        steps=2,
        total_steps=2,
        tokens=100,
        tokens_per_domain={"a": 25, "b": 75},
        loss_curve=[5.0, float("nan")],
        lr_curve=[1e-3, 1e-3],
        aux_loss_curve=[0.0, 0.0],
        evals=[EvalPoint(step=2, tokens=100, loss={"a": 1.0, "b": 3.0}, bpb={"a": 0.5, "b": 1.5})],
        params=10,
        active_params=10,
        flops_per_token=60,
        flops=6000.0,
        tokens_per_s=50.0,
        flops_per_s=3000.0,
        wall_time_s=2.0,
    )
    data.update(changes)
    return TrainResult(**data)  # type: ignore[arg-type]


def test_result_is_strict_json_and_round_trips(tmp_path) -> None:
    result = _result()
    text = json.dumps(result.to_dict(), allow_nan=False)  # NaN loss written as a string
    again = TrainResult.from_dict(json.loads(text))
    assert again.loss_curve[0] == 5.0 and math.isnan(again.loss_curve[1])
    assert again.evals == result.evals and again.val_bpb == {"a": 0.5, "b": 1.5}
    path = result.save(tmp_path / "result.json")
    assert TrainResult.load(path).to_dict() == result.to_dict()
    assert not list(tmp_path.glob(".*tmp*"))


def test_auto_prefers_megatron_and_falls_back_with_a_reason() -> None:
    backend, reason = backends.choose("auto", tiny_cpu(), Parallelism(), "cpu")
    assert backend.name == "megatron" and reason.startswith("auto: megatron")
    # MLA on a CPU: Megatron needs TE on a GPU, DeepSpeed's model has no MLA -> nothing can run it
    with pytest.raises(BackendUnavailable, match="megatron: multi-latent attention needs TransformerEngine"):
        backends.choose("auto", openseek_small_proxy(mla=True), Parallelism(), "cpu")
    with pytest.raises(BackendUnavailable, match="tensor and expert parallelism are Megatron-only"):
        backends.choose("deepspeed", tiny_cpu(), Parallelism(tp=2), "cpu")
    with pytest.raises(ConfigError, match="unknown backend"):
        backends.choose("jax", tiny_cpu(), Parallelism(), "cpu")
    with pytest.raises(ConfigError, match=r"deepspeed\.zero_stage"):
        DeepSpeedBackend(zero_stage=4)


def test_auto_falls_back_to_deepspeed_when_megatron_refuses(monkeypatch) -> None:
    megatron = backends.get("megatron")
    monkeypatch.setattr(megatron, "unsupported", lambda proxy, parallel, device: "megatron-core does not import")
    backend, reason = backends.choose("auto", tiny_cpu(), Parallelism(), "cpu")
    assert backend.name == "deepspeed"
    assert "megatron: megatron-core does not import" in reason


def test_moe_presets_share_the_deepseek_v3_layout() -> None:
    """The MoE presets differ only in the parameters of `deepseek_v3_moe`; the layout is spelled out once."""
    layout = {
        "score_function": "sigmoid",
        "expert_bias": True,
        "first_k_dense": 1,
        "aux_loss_type": "seq_aux_loss",
        "aux_loss_coeff": 1e-4,
    }
    assert moe_cpu().moe == MoEConfig(
        num_experts=8, top_k=2, expert_ffn_hidden_size=128, shared_expert_ffn_hidden_size=128,
        num_groups=4, group_top_k=2, **layout,
    )  # fmt: skip
    assert openseek_small_proxy(mla=False).moe == MoEConfig(
        num_experts=64, top_k=6, expert_ffn_hidden_size=224, shared_expert_ffn_hidden_size=448,
        num_groups=1, group_top_k=1, bias_update_rate=1e-3, topk_scaling_factor=2.446, **layout,
    )  # fmt: skip
    assert deepseek_v3_moe(8, 64, shared_ffn=0).shared_expert_ffn_hidden_size == 0
