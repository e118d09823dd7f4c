"""Statistics, plots and the HTML report of a validation (plain functions: runs in, numbers/PNG/HTML out).

A validation trains a few mixtures at two scales (the sweep's proxy and a larger target; with a proxy
ladder, its largest scale too) with several seeds each. Here the per-seed numbers become means with a
spread (standard deviation over seeds and a 95% Student-t interval), differences between the
recommendation and each baseline (paired by seed: the same seed gives the same initialisation), the
proxy-vs-target rank agreement (Spearman; with a ladder, also the scale-aware surrogate's predictions at
the target's size against the target), a verdict computed from those numbers, and a self-contained HTML
page (images inlined as base64).
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from flows.steps.report import _plt, _save, markdown_table
from mixture_search.keys import metric_key

Scale = Literal["proxy", "largest_proxy", "target"]
RECOMMENDED = "recommended"


@dataclass(frozen=True)
class RunRecord:
    """One training of one mixture at one scale with one seed, and what it measured."""

    mixture: str
    scale: Scale
    seed: int
    objective: float | None
    metrics: Mapping[str, float] = field(default_factory=dict)
    trial_key: str = ""
    run_id: str | None = None
    wall_s: float = 0.0


@dataclass(frozen=True)
class Stat:
    """Mean over seeds with its standard deviation (ddof=1) and a 95% Student-t interval."""

    mean: float
    std: float
    n: int
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat | None:
        xs = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)
        if xs.size == 0:
            return None
        mean = float(xs.mean())
        if xs.size == 1:
            return cls(mean, math.nan, 1, math.nan, math.nan)
        from scipy import stats  # ~0.5 s, only for a report: `mixsweep --help` imports this module

        std = float(xs.std(ddof=1))
        half = float(stats.t.ppf(0.975, xs.size - 1)) * std / math.sqrt(xs.size)
        return cls(mean, std, int(xs.size), mean - half, mean + half)

    def text(self, digits: int = 4) -> str:
        if self.n < 2:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"

    def interval_text(self, digits: int = 4) -> str:
        return "" if self.n < 2 else f"[{self.low:.{digits}f}, {self.high:.{digits}f}]"


# ------------------------------------------------------------------------------------------------
# metrics of one run


def lighteval_means(metrics: Mapping[str, float], domains: Sequence[str]) -> dict[str, float]:
    """Means over `domains` of LightEval's local tasks: `bpb` (bits per byte) and `cloze` (accuracy),
    each only when every domain has it."""
    from eval.tasks.local import task_name  # the eval package, which `mixsweep --help` does not load otherwise

    out: dict[str, float] = {}
    for kind, metric in (("bpb", "bpb"), ("cloze", "acc")):
        keys = [f"eval.{metric_key(task_name(kind, d))}/{metric}" for d in domains]
        if domains and all(k in metrics and math.isfinite(metrics[k]) for k in keys):
            out[kind] = float(np.mean([metrics[k] for k in keys]))
    return out


def paired_difference(a: Mapping[int, float], b: Mapping[int, float]) -> Stat | None:
    """`a - b` over the seeds both have (the same seed: the same initialisation and data seed)."""
    seeds = sorted(set(a) & set(b))
    return Stat.of([a[s] - b[s] for s in seeds])


def rank_agreement(proxy: Mapping[str, float], target: Mapping[str, float]) -> dict[str, Any]:
    """Spearman's rho between the proxy ranking and the target ranking of the mixtures both have."""
    names = [n for n in proxy if n in target and math.isfinite(proxy[n]) and math.isfinite(target[n])]
    out: dict[str, Any] = {"n": len(names), "mixtures": names, "spearman": math.nan, "p_value": math.nan}
    x = np.array([proxy[n] for n in names], dtype=float)
    y = np.array([target[n] for n in names], dtype=float)
    if len(names) >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
        from scipy.stats import spearmanr  # scipy, as in `Stat.of`

        res = spearmanr(x, y)
        out["spearman"], out["p_value"] = float(res.statistic), float(res.pvalue)
    out["proxy_rank"] = {n: int(r) for n, r in zip(names, _ranks(x))}
    out["target_rank"] = {n: int(r) for n, r in zip(names, _ranks(y))}
    return out


def _ranks(values: np.ndarray) -> list[int]:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=int)
    ranks[order] = np.arange(1, len(values) + 1)
    return ranks.tolist()


# ------------------------------------------------------------------------------------------------
# the validation document


def summarize(
    runs: Sequence[RunRecord],
    mixtures: Sequence[dict[str, Any]],
    domains: Sequence[str],
    scale_aware: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Per mixture: proxy and target objective over seeds, per-domain target bpb, LightEval means;
    the recommendation against each baseline; proxy-vs-target rank agreement; a verdict.

    `mixtures` are `{"name", "role", "weights"}` with role `recommended`, `baseline` or `rank` (trained
    at both scales only for the rank agreement). Lower objective (bits per byte) is better.
    `scale_aware` (a ladder sweep: `flows.steps.validate.scale_aware_predictions`) holds the sweep's
    model's `predicted` objective of each mixture at the target's size, ranked against the target here."""
    rows = []
    by_name: dict[str, dict[str, Any]] = {}
    predicted = dict((scale_aware or {}).get("predicted") or {})
    laddered = any(r.scale == "largest_proxy" for r in runs)
    for m in mixtures:
        name = m["name"]
        mine = [r for r in runs if r.mixture == name and r.objective is not None and math.isfinite(r.objective)]
        target = [r for r in mine if r.scale == "target"]
        proxy = [r for r in mine if r.scale == "proxy"]
        largest = [r for r in mine if r.scale == "largest_proxy"]
        per_domain = {d: Stat.of([r.metrics.get(f"val.bpb.{d}", math.nan) for r in target]) for d in domains}
        light = [lighteval_means(r.metrics, domains) for r in target]
        row = {
            "name": name,
            "role": m["role"],
            "weights": dict(m["weights"]),
            "proxy": _stat_dict(Stat.of([float(r.objective or 0) for r in proxy])),
            "proxy_seeds": {r.seed: r.objective for r in proxy},
            **(
                {
                    "largest_proxy": _stat_dict(Stat.of([float(r.objective or 0) for r in largest])),
                    "largest_proxy_seeds": {r.seed: r.objective for r in largest},
                }
                if laddered
                else {}
            ),
            **({"predicted": predicted[name]} if name in predicted else {}),
            "target": _stat_dict(Stat.of([float(r.objective or 0) for r in target])),
            "target_seeds": {r.seed: r.objective for r in target},
            "domains": {d: _stat_dict(s) for d, s in per_domain.items()},
            "lighteval": {
                kind: _stat_dict(Stat.of([x[kind] for x in light if kind in x])) for kind in ("bpb", "cloze")
            },
            "runs": {
                f"{r.scale}-s{r.seed}": {"trial_key": r.trial_key, "run_id": r.run_id} for r in sorted(
                    mine, key=lambda r: (r.scale, r.seed)
                )
            },
        }  # fmt: skip
        rows.append(row)
        by_name[name] = row
    comparisons = []
    rec = by_name.get(RECOMMENDED)
    if rec is not None:
        for row in rows:
            if row["role"] != "baseline":
                continue
            delta = paired_difference(rec["target_seeds"], row["target_seeds"])
            comparisons.append(
                {
                    "baseline": row["name"],
                    "delta": _stat_dict(delta),
                    "relative": None if delta is None or not row["target"] else delta.mean / row["target"]["mean"],
                    "outcome": _outcome(delta),
                }
            )
    agreement = rank_agreement(
        {r["name"]: r["proxy"]["mean"] for r in rows if r["proxy"]},
        {r["name"]: r["target"]["mean"] for r in rows if r["target"]},
    )
    targets = {r["name"]: r["target"]["mean"] for r in rows if r["target"]}
    doc = {
        "mixtures": rows,
        "comparisons": comparisons,
        "rank_agreement": agreement,
        "train_wall_s": {
            s: round(sum(r.wall_s for r in runs if r.scale == s), 1)
            for s in ("proxy", *(("largest_proxy",) if laddered else ()), "target")
        },
    }
    if laddered:  # the naive transfer from the ladder's largest scale: its ranking taken as the target's
        doc["rank_agreement_largest_proxy"] = rank_agreement(
            {r["name"]: r["largest_proxy"]["mean"] for r in rows if r.get("largest_proxy")}, targets
        )
    if scale_aware is not None:
        sign = -1.0 if scale_aware.get("maximize") else 1.0  # a maximised objective ranks the other way
        doc["scale_aware"] = {
            **{k: v for k, v in scale_aware.items() if k != "predicted"},
            "rank_agreement": rank_agreement({n: sign * v for n, v in predicted.items()}, targets),
        }
    doc["goals"] = goals(doc)
    doc["verdict"] = verdict(doc)
    return doc


#: the bar a validation is held to: the recommendation beats these baselines beyond seed noise ...
GOAL_BASELINES = ("natural", "uniform")
#: ... and the proxy ranks the mixtures as the target does
GOAL_SPEARMAN = 0.9
#: a ladder's scale-aware ranking is held to the same rho, over at least this many mixtures
GOAL_SCALE_AWARE_MIXTURES = 8


def goals(doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each goal with its figure and `met`: a lead over natural and over uniform whose paired 95%
    interval excludes 0 (figure: the interval's upper end, which must be below 0), and proxy-to-target
    Spearman of at least 0.9. A baseline the spec does not train is left out."""
    out: dict[str, dict[str, Any]] = {}
    for c in doc["comparisons"]:
        if c["baseline"] not in GOAL_BASELINES:
            continue
        delta = c["delta"] or {}
        high = delta.get("high")
        out[f"beats_{c['baseline']}_beyond_noise"] = {
            "figure": high,
            "interval": [delta.get("low"), high],
            "met": c["outcome"] == "wins",
        }
    rho = doc["rank_agreement"]["spearman"]
    finite = rho is not None and math.isfinite(rho)
    out["proxy_target_spearman"] = {
        "figure": rho if finite else None,
        "goal": GOAL_SPEARMAN,
        "n": doc["rank_agreement"]["n"],
        "met": bool(finite and rho >= GOAL_SPEARMAN),
    }
    if doc.get("scale_aware") and "rank_agreement" in doc["scale_aware"]:
        ag = doc["scale_aware"]["rank_agreement"]
        rho, n = ag["spearman"], ag["n"]
        finite = rho is not None and math.isfinite(rho)
        out["scale_aware_spearman"] = {
            "figure": rho if finite else None,
            "goal": GOAL_SPEARMAN,
            "n": n,
            "min_mixtures": GOAL_SCALE_AWARE_MIXTURES,
            "met": bool(finite and rho >= GOAL_SPEARMAN and n >= GOAL_SCALE_AWARE_MIXTURES),
        }
    return out


def goals_text(found: Mapping[str, Mapping[str, Any]]) -> str:
    """One sentence: which goals are met and which are not, with their figures."""
    parts = []
    for name, g in found.items():
        if name in ("proxy_target_spearman", "scale_aware_spearman"):
            figure = "undefined" if g["figure"] is None else f"{g['figure']:.2f}"
            what = "proxy-to-target" if name == "proxy_target_spearman" else "scale-aware prediction-to-target"
            least = f" over at least {g['min_mixtures']} mixtures" if "min_mixtures" in g else ""
            label = f"{what} Spearman >= {g['goal']}{least} ({figure} over {g['n']} mixtures)"
        else:
            baseline = name.removeprefix("beats_").removesuffix("_beyond_noise")
            low, high = g["interval"]
            interval = "no interval" if high is None else f"interval [{low:+.4f}, {high:+.4f}]"
            label = f"a lead over {baseline} whose 95% interval excludes 0 ({interval})"
        parts.append(f"{label}: {'met' if g['met'] else 'not met'}")
    return "Goals: " + "; ".join(parts) + "." if parts else ""


def _stat_dict(s: Stat | None) -> dict[str, Any] | None:
    """JSON-ready: NaN (undefined with one seed) becomes None."""
    if s is None:
        return None
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(s).items()}


def _stat(d: Mapping[str, Any] | None) -> Stat | None:
    if not d:
        return None
    return Stat(
        float(d["mean"]),
        math.nan if d.get("std") is None else float(d["std"]),
        int(d["n"]),
        math.nan if d.get("low") is None else float(d["low"]),
        math.nan if d.get("high") is None else float(d["high"]),
    )


def _outcome(delta: Stat | None) -> str:
    """`wins`/`loses` (recommended minus baseline below/above 0 with the 95% interval excluding 0),
    `ahead`/`behind` (the mean only), `tie`, or `unknown`."""
    if delta is None:
        return "unknown"
    if delta.n >= 2 and delta.high < 0:
        return "wins"
    if delta.n >= 2 and delta.low > 0:
        return "loses"
    if delta.mean < 0:
        return "ahead"
    if delta.mean > 0:
        return "behind"
    return "tie"


def verdict(doc: Mapping[str, Any]) -> str:
    """A plain-language conclusion computed from the numbers (never written in advance)."""
    rows = [r for r in doc["mixtures"] if r["role"] in (RECOMMENDED, "baseline") and r["target"]]
    rec = next((r for r in rows if r["role"] == RECOMMENDED), None)
    if rec is None:
        return "The recommended mixture has no finished target training, so nothing can be concluded."
    ordered = sorted(rows, key=lambda r: r["target"]["mean"])
    place = ordered.index(rec) + 1
    n_seeds = rec["target"]["n"]
    first = (
        f"At the target scale the recommended mixture reaches {_stat(rec['target']).text()} bits per byte "  # type: ignore[union-attr]
        f"(mean ± std over {n_seeds} seed{'s' if n_seeds != 1 else ''}), "
        + ("the lowest" if place == 1 else f"place {place}")
        + f" of the {len(ordered)} compared mixtures."
    )
    parts = [first]
    words = {
        "wins": "beats {b} by {d} (95% interval of the paired difference {i}: it excludes 0)",
        "ahead": "is ahead of {b} by {d}, but the 95% interval {i} includes 0: within seed noise",
        "behind": "is behind {b} by {d}, but the 95% interval {i} includes 0: within seed noise",
        "loses": "loses to {b} by {d} (95% interval {i}: it excludes 0)",
        "tie": "ties with {b}",
        "unknown": "cannot be compared with {b} (no common seeds)",
    }
    for c in doc["comparisons"]:
        delta = _stat(c["delta"])
        size = "" if delta is None else f"{abs(delta.mean):.4f} bits per byte ({abs(c['relative'] or 0) * 100:.2f}%)"
        interval = "" if delta is None else delta.interval_text()
        parts.append("It " + words[c["outcome"]].format(b=c["baseline"], d=size, i=interval) + ".")
    ag = doc["rank_agreement"]
    if ag["spearman"] is not None and math.isfinite(ag["spearman"]):
        parts.append(
            f"Proxy and target rank the {ag['n']} mixtures trained at both scales with Spearman "
            f"{ag['spearman']:.2f} (p = {ag['p_value']:.2f})."
        )
    else:
        parts.append(f"The rank agreement is undefined ({ag['n']} mixtures with distinct objectives at both scales).")
    largest = doc.get("rank_agreement_largest_proxy")
    if largest and largest["spearman"] is not None and math.isfinite(largest["spearman"]):
        parts.append(
            f"The ladder's largest proxy ranks {largest['n']} of them with Spearman {largest['spearman']:.2f} "
            f"(p = {largest['p_value']:.2f})."
        )
    aware = doc.get("scale_aware") or {}
    if "rank_agreement" in aware:
        ag = aware["rank_agreement"]
        if ag["spearman"] is not None and math.isfinite(ag["spearman"]):
            parts.append(
                f"The sweep's scale-aware surrogate ({aware['surrogate']}), predicting at the target's size, ranks "
                f"the {ag['n']} mixtures with Spearman {ag['spearman']:.2f} (p = {ag['p_value']:.2f})."
            )
    elif "note" in aware:
        parts.append(f"No scale-aware prediction: {aware['note']}.")
    if doc.get("goals"):
        parts.append(goals_text(doc["goals"]))
    return " ".join(parts)


# ------------------------------------------------------------------------------------------------
# plots


def plot_domain_bpb(doc: Mapping[str, Any], domains: Sequence[str], path: Path) -> Path:
    """Per-domain held-out bits per byte at the target scale: one bar per mixture, std over seeds."""
    plt = _plt()
    rows = [r for r in doc["mixtures"] if r["target"]]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(domains) + 2), 4.2))
    width = 0.8 / max(1, len(rows))
    x = np.arange(len(domains))
    for i, r in enumerate(rows):
        stats = [_stat(r["domains"].get(d)) for d in domains]
        means = [s.mean if s else np.nan for s in stats]
        errs = [s.std if s and s.n >= 2 else 0.0 for s in stats]
        ax.bar(x + (i - (len(rows) - 1) / 2) * width, means, width, yerr=errs, capsize=2, label=r["name"])
    ax.set_xticks(x, list(domains), rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("held-out bits per byte (lower is better)")
    finite = [s["mean"] for r in rows for s in r["domains"].values() if s]
    if finite:
        ax.set_ylim(min(finite) * 0.95, max(finite) * 1.03)
    ax.legend(fontsize=7, ncol=min(3, len(rows)))
    ax.set_title("target model: bits per byte per domain (mean ± std over seeds)")
    fig.tight_layout()
    return _save(fig, path)


def plot_objective(doc: Mapping[str, Any], path: Path) -> Path:
    """The target objective per mixture: mean with its 95% interval, every seed as a dot."""
    plt = _plt()
    rows = sorted((r for r in doc["mixtures"] if r["target"]), key=lambda r: r["target"]["mean"])
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(rows) + 1.4))
    for i, r in enumerate(rows):
        s = _stat(r["target"])
        assert s is not None
        color = "tab:red" if r["role"] == RECOMMENDED else ("tab:blue" if r["role"] == "baseline" else "tab:gray")
        if s.n >= 2:
            ax.errorbar([s.mean], [i], xerr=[[s.mean - s.low], [s.high - s.mean]], fmt="o", color=color, capsize=3)
        else:
            ax.plot([s.mean], [i], "o", color=color)
        seeds = [v for v in r["target_seeds"].values() if v is not None]
        ax.plot(seeds, [i] * len(seeds), "x", color=color, alpha=0.6)
    ax.set_yticks(range(len(rows)), [r["name"] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("target objective: mean held-out bits per byte (95% interval; x: seeds)")
    ax.set_title("target scale, best first")
    fig.tight_layout()
    return _save(fig, path)


def plot_rank_agreement(doc: Mapping[str, Any], path: Path) -> Path:
    """Proxy objective against target objective, each with its std over seeds, and Spearman's rho."""
    plt = _plt()
    rows = [r for r in doc["mixtures"] if r["target"] and r["proxy"]]
    fig, ax = plt.subplots(figsize=(5.4, 4.4))
    for r in rows:
        p, t = _stat(r["proxy"]), _stat(r["target"])
        assert p is not None and t is not None
        color = "tab:red" if r["role"] == RECOMMENDED else ("tab:blue" if r["role"] == "baseline" else "tab:gray")
        ax.errorbar(
            [p.mean], [t.mean], xerr=[p.std if p.n >= 2 else 0.0], yerr=[t.std if t.n >= 2 else 0.0],
            fmt="o", color=color, capsize=3,
        )  # fmt: skip
        ax.annotate(r["name"], (p.mean, t.mean), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ag = doc["rank_agreement"]
    rho = ag.get("spearman")
    label = f"Spearman {rho:.2f} (n={ag['n']})" if rho is not None and math.isfinite(rho) else "Spearman undefined"
    ax.set_xlabel("proxy objective (bits per byte)")
    ax.set_ylabel("target objective (bits per byte)")
    ax.set_title(f"proxy vs target: {label}")
    fig.tight_layout()
    return _save(fig, path)


def plot_scale_aware(doc: Mapping[str, Any], path: Path) -> Path:
    """A ladder sweep's prediction at the target's size against the target objective (std over seeds),
    with the y = x line: how far off the scale-aware surrogate is, and whether it ranks the mixtures."""
    plt = _plt()
    rows = [r for r in doc["mixtures"] if r["target"] and "predicted" in r]
    fig, ax = plt.subplots(figsize=(5.4, 4.4))
    for r in rows:
        t = _stat(r["target"])
        assert t is not None
        color = "tab:red" if r["role"] == RECOMMENDED else ("tab:blue" if r["role"] == "baseline" else "tab:gray")
        ax.errorbar([r["predicted"]], [t.mean], yerr=[t.std if t.n >= 2 else 0.0], fmt="o", color=color, capsize=3)
        ax.annotate(r["name"], (r["predicted"], t.mean), textcoords="offset points", xytext=(5, 4), fontsize=8)
    if rows:
        values = [r["predicted"] for r in rows] + [r["target"]["mean"] for r in rows]
        ax.plot([min(values), max(values)], [min(values), max(values)], ":", color="gray", lw=1, label="y = x")
        ax.legend(fontsize=7)
    ag = (doc.get("scale_aware") or {}).get("rank_agreement") or {}
    rho = ag.get("spearman")
    label = f"Spearman {rho:.2f} (n={ag['n']})" if rho is not None and math.isfinite(rho) else "Spearman undefined"
    ax.set_xlabel("predicted at the target's size (sweep's scale-aware surrogate)")
    ax.set_ylabel("target objective (bits per byte)")
    ax.set_title(f"scale-aware prediction vs target: {label}", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


# ------------------------------------------------------------------------------------------------
# tables and HTML


def table_rows(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per mixture, best target objective first (what Prefect's table artifact and the HTML show)."""
    deltas = {c["baseline"]: c for c in doc["comparisons"]}
    rows = []
    for r in sorted(doc["mixtures"], key=lambda r: r["target"]["mean"] if r["target"] else math.inf):
        t, p, lp = _stat(r["target"]), _stat(r["proxy"]), _stat(r.get("largest_proxy"))
        bpb, cloze = _stat(r["lighteval"].get("bpb")), _stat(r["lighteval"].get("cloze"))
        c = deltas.get(r["name"])
        delta = _stat(c["delta"]) if c else None
        rows.append(
            {
                "mixture": r["name"],
                "role": r["role"],
                "target objective (mean ± std)": t.text() if t else "-",
                "target 95% interval": t.interval_text() if t else "",
                "proxy objective (mean ± std)": p.text() if p else "-",
                **({"largest proxy objective (mean ± std)": lp.text() if lp else "-"} if "largest_proxy" in r else {}),
                **({"scale-aware prediction": f"{r['predicted']:.4f}"} if "predicted" in r else {}),
                "LightEval bpb": bpb.text() if bpb else "-",
                "LightEval cloze acc": cloze.text(3) if cloze else "-",
                "recommended minus this (95% interval)": (
                    f"{delta.mean:+.4f} {delta.interval_text()}".strip() if delta else ""
                ),
                "outcome": c["outcome"] if c else "",
            }
        )
    return rows


def markdown_summary(doc: Mapping[str, Any]) -> str:
    return f"# Validation `{doc.get('name', '')}`\n\n{doc['verdict']}\n\n" + markdown_table(table_rows(doc))


def render_html(doc: Mapping[str, Any], images: Mapping[str, Path]) -> str:
    """One self-contained page: the verdict, the table, the plots (base64 PNG), the set-up and the
    mixtures' weights. No external scripts, styles, fonts or images."""
    e = html.escape
    rows = table_rows(doc)
    cols = list(rows[0]) if rows else []
    table = "<table><tr>" + "".join(f"<th>{e(c)}</th>" for c in cols) + "</tr>"
    for row in rows:
        cls = ' class="rec"' if row["role"] == RECOMMENDED else ""
        table += f"<tr{cls}>" + "".join(f"<td>{e(str(row[c]))}</td>" for c in cols) + "</tr>"
    table += "</table>"
    domains = list(dict.fromkeys(d for r in doc["mixtures"] for d in r["weights"]))
    weights = "<table><tr><th>mixture</th>" + "".join(f"<th>{e(d)}</th>" for d in domains) + "</tr>"
    for r in doc["mixtures"]:
        total = sum(r["weights"].values()) or 1.0
        weights += f"<tr><td>{e(r['name'])}</td>" + "".join(
            f"<td>{r['weights'].get(d, 0.0) / total:.3f}</td>" for d in domains
        ) + "</tr>"  # fmt: skip
    weights += "</table>"
    figures = "".join(
        f'<figure><img alt="{e(name)}" src="data:image/png;base64,{base64.b64encode(Path(p).read_bytes()).decode()}">'
        f"<figcaption>{e(name)}</figcaption></figure>"
        for name, p in images.items()
    )
    setup = doc.get("setup", {})
    setup_rows = "".join(f"<tr><th>{e(str(k))}</th><td>{e(str(v))}</td></tr>" for k, v in setup.items())
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f2f2f2}"
        "tr.rec td{background:#fff3e6;font-weight:bold}figure{display:inline-block;margin:0.5em}"
        "img{max-width:100%}.verdict{font-size:16px;background:#f6f8fa;padding:1em;border-left:4px solid #888}"
    )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>MixSweep validation {e(str(doc.get('name', '')))}</title><style>{style}</style></head><body>"
        f"<h1>Does the recommended mixture hold at a larger scale? ({e(str(doc.get('name', '')))})</h1>"
        f"<p class='verdict'>{e(doc['verdict'])}</p>"
        "<h2>Results</h2><p>Objective: mean held-out bits per byte over the target domains (lower is better); "
        "mean ± standard deviation over seeds, 95% Student-t intervals; differences are paired by seed.</p>"
        f"{table}<h2>Plots</h2>{figures}<h2>Set-up</h2><table>{setup_rows}</table>"
        f"<h2>Mixtures (shares)</h2>{weights}</body></html>"
    )
