"""Leaderboard, round reports and plots of a sweep (plain functions: rows in, markdown/PNG out)."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flows.trials.result import TrialResult
from mixture_search.mixture import Mixture
from mixture_search.schedule import Schedule, cell


def rank(results: Sequence[TrialResult], *, maximize: bool = False) -> list[TrialResult]:
    """Finished trials best first (ties by trial key, so the order is stable), then the rest."""
    ok = sorted(
        (r for r in results if r.ok), key=lambda r: ((-1 if maximize else 1) * float(r.objective or 0), r.trial_key)
    )
    rest = sorted((r for r in results if not r.ok), key=lambda r: (r.status, r.trial_key))
    return ok + rest


def leaderboard_rows(
    results: Sequence[TrialResult],
    domains: Sequence[str],
    *,
    maximize: bool = False,
    extra: Sequence[str] = (),
    seeds: Mapping[str, Sequence[float]] | None = None,
) -> list[dict[str, Any]]:
    """One row per trial, best first. With `seeds` (trial key -> its mixture's objective per seed, when
    the sweep replicated its top trials; `results` then hold the means) a `seeds` column and, for a
    mixture with more than one, the standard deviation between its seeds (`seed_std`)."""
    rows = []
    for i, r in enumerate(rank(results, maximize=maximize), start=1):
        row: dict[str, Any] = {
            "rank": i if r.ok else None,
            "trial": r.trial_key[:8],
            "round": r.round,
            "sampler": r.sampler,
            "status": r.status,
            "objective": None if r.objective is None else round(float(r.objective), 5),
        }
        if seeds is not None:
            values = seeds.get(r.trial_key, [])
            row["seeds"] = len(values)
            row["seed_std"] = round(statistics.stdev(values), 5) if len(values) > 1 else None
        row.update(share_columns(r.mixture, domains))
        for k in extra:
            v = r.metrics.get(k)
            row[k] = None if v is None or not math.isfinite(v) else round(v, 5)
        if r.error:
            row["error"] = r.error[:120]
        rows.append(row)
    return rows


def share_columns(mixture: Mixture, domains: Sequence[str]) -> dict[str, float]:
    """A mixture's leaderboard columns: each domain's share; for a schedule (a phased sweep's trial, named
    by its cells `p<k>.<domain>`) each phase's end, then each domain's share in every phase, side by side
    (`code@p0`, `code@p1`, ...)."""
    if not domains or domains[0] in mixture or cell(0, domains[0]) not in mixture:
        return {d: round(mixture.share(d), 4) if d in mixture else 0.0 for d in domains}
    schedule = Schedule.from_flat(mixture)
    out = {f"until@p{k}": round(u, 4) for k, u in enumerate(schedule.untils[:-1])}
    shares = schedule.shares()
    for i, d in enumerate(schedule.names):
        out.update({f"{d}@p{k}": round(float(shares[k, i]), 4) for k in range(len(schedule.phases))})
    return out


def markdown_table(rows: Sequence[dict[str, Any]], *, limit: int = 50) -> str:
    if not rows:
        return "_no trials yet_\n"
    cols = list(dict.fromkeys(k for r in rows for k in r))
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows[:limit]:
        out.append("| " + " | ".join("" if r.get(c) is None else str(r.get(c)) for c in cols) + " |")
    if len(rows) > limit:
        out.append(f"\n_{len(rows) - limit} more rows in the MLflow experiment_")
    return "\n".join(out) + "\n"


def round_report(
    *,
    sweep: str,
    round_: int,
    rounds: int,
    results: Sequence[TrialResult],
    domains: Sequence[str],
    objective: str,
    maximize: bool,
    cv: dict[str, Any] | None,
    mlflow_url: str | None,
    seeds: Mapping[str, Sequence[float]] | None = None,
    run_urls: Mapping[str, str] | None = None,
) -> str:
    """The markdown report of a round: counts, the best trial so far, the surrogate's CV, failures and
    the leaderboard, each trial linked to its MLflow run (`run_urls`: trial key -> URL) when known."""
    done = [r for r in results if r.ok]
    failed = [r for r in results if r.status == "failed"]
    lines = [f"# Sweep `{sweep}`: round {round_ + 1} of {rounds}", ""]
    lines.append(
        f"{len(results)} trials so far: {len(done)} finished, {len(failed)} failed, {len(results) - len(done) - len(failed)} stopped early."
    )
    if done:
        best = rank(done, maximize=maximize)[0]
        lines += ["", f"**Best so far** ({objective} = {best.objective:.5f}, trial `{best.trial_key[:8]}`):", ""]
        lines.append(" ".join(f"`{d}` {v:.3f}" for d, v in share_columns(best.mixture, domains).items()))
    if cv:
        lines += ["", "**Surrogate cross-validation** (out-of-fold):", "", markdown_table([cv])]
    if failed:
        lines += ["", "**Failed trials**:", ""] + [f"- `{r.trial_key[:8]}`: {r.error}" for r in failed]
    if mlflow_url:
        lines += ["", f"Compare the mixtures in MLflow: {mlflow_url}"]
    rows = leaderboard_rows(results, domains, maximize=maximize, seeds=seeds)
    if run_urls:
        links = {r.trial_key[:8]: run_urls[r.trial_key] for r in results if r.trial_key in run_urls}
        rows = [
            {**row, "trial": f"[{row['trial']}]({links[row['trial']]})"} if row["trial"] in links else row
            for row in rows
        ]
    lines += ["", "## Leaderboard", "", markdown_table(rows)]
    return "\n".join(lines)


def recommended_markdown(
    *,
    sweep: str,
    source: str,
    yaml_text: str,
    exports: Sequence[str],
    confirm_runs: Sequence[dict[str, Any]] = (),
    run_urls: Mapping[str, str] | None = None,
) -> str:
    """The final artifact of a sweep: what was exported and from what (`source`), the mixture, links to
    the confirmation runs that decided it (`confirm_runs`: the `runs` of a `Confirmation`; `run_urls`:
    run id -> MLflow URL) and, in one sentence, what to do next with the exported files."""
    lines = [f"# Recommended mixture for `{sweep}`", "", f"Exported: {source}.", "", f"```yaml\n{yaml_text}```", ""]
    linked = [r for r in confirm_runs if r.get("run_id") and run_urls and r["run_id"] in run_urls]
    if linked:
        runs = ", ".join(
            f"[{r['role'].replace('_', ' ')}, seed {r['seed']}]({run_urls[r['run_id']]})"  # type: ignore[index]
            for r in linked
        )
        lines += [f"Decided by the confirmation runs: {runs}.", ""]
    lines += [f"**Next:** {next_step(exports)}"]
    return "\n".join(lines) + "\n"


def next_step(exports: Sequence[str]) -> str:
    """One sentence on how to use the exported files (the Megatron data_path first, as most runs use it)."""
    paths = [Path(p) for p in exports]
    data_path = next((p for p in paths if p.name == "data_path.txt"), None)
    others = [p for p in paths if p.suffix in (".yaml", ".yml", ".sh") and p.name != "mixture.yaml"]
    parts = []
    if data_path is not None:
        parts.append(f"paste `{data_path}` into your Megatron command (`--data-path $(cat {data_path})`)")
    if others:
        parts.append(("or start from " if parts else "start from ") + ", ".join(f"`{p}`" for p in others))
    if not parts:
        mixture = next((p for p in paths), None)
        return (
            f"convert `{mixture}` for your trainer with `mixsweep mixture convert`." if mixture else "nothing exported."
        )
    return " ".join(parts) + "."


# ------------------------------------------------------------------------------------------------
# plots (matplotlib, Agg)


def _plt() -> Any:
    import matplotlib  # ~0.3 s, only when a plot is drawn: `mixsweep --help` imports this module

    matplotlib.use("Agg")  # before pyplot is imported: no display on servers and Ray workers
    import matplotlib.pyplot as plt  # matplotlib, as above; after the backend is chosen

    return plt


def plot_objective_vs_weights(
    results: Sequence[TrialResult], domains: Sequence[str], objective: str, path: Path
) -> Path:
    plt = _plt()
    ok = [r for r in results if r.ok]
    n = len(domains)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    y = np.array([r.objective for r in ok], dtype=float)
    for i, d in enumerate(domains):
        ax = axes[i // cols][i % cols]
        x = np.array([r.mixture.share(d) for r in ok])
        ax.scatter(x, y, s=18, c=[r.round for r in ok], cmap="viridis")
        ax.set_title(d, fontsize=9)
        ax.set_xlabel("share", fontsize=8)
        if i % cols == 0:
            ax.set_ylabel(objective, fontsize=8)
    for j in range(n, rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.suptitle("objective vs each domain's share (colour: round)")
    fig.tight_layout()
    return _save(fig, path)


def plot_predicted_vs_actual(actual: np.ndarray, predicted: np.ndarray, name: str, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 4))
    ax.scatter(actual, predicted, s=20)
    lo, hi = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set_xlabel("actual objective")
    ax.set_ylabel("predicted (out of fold)")
    ax.set_title(f"surrogate {name}: cross-validated")
    fig.tight_layout()
    return _save(fig, path)


def plot_loss_curves(results: Sequence[TrialResult], path: Path, *, top: int = 8) -> Path | None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = 0
    for r in rank(results)[:top]:
        result_file = Path(r.paths.get("run_dir", "")) / "result.json"
        if not result_file.is_file():
            continue
        curve = json.loads(result_file.read_text()).get("loss_curve") or []
        if curve:
            ax.plot(
                range(1, len(curve) + 1),
                curve,
                lw=1,
                label=f"{r.trial_key[:8]} ({r.objective:.3f})" if r.objective else r.trial_key[:8],
            )
            drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.legend(fontsize=7)
    ax.set_title("training loss of the best trials")
    fig.tight_layout()
    return _save(fig, path)


def plot_leaderboard(
    results: Sequence[TrialResult], path: Path, *, maximize: bool = False, top: int = 20
) -> Path | None:
    ok = rank([r for r in results if r.ok], maximize=maximize)[:top]
    if not ok:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(ok) + 1.2))
    ax.barh([r.trial_key[:8] for r in ok][::-1], [float(r.objective or 0) for r in ok][::-1])
    ax.set_xlabel("objective")
    ax.set_title("leaderboard")
    fig.tight_layout()
    return _save(fig, path)


def plot_simplex(
    results: Sequence[TrialResult], domains: Sequence[str], path: Path, proposal: Any | None = None
) -> Path | None:
    """Ternary view of a 3-domain sweep: every trial coloured by objective, the proposal as a star."""
    if len(domains) != 3:
        return None
    ok = [r for r in results if r.ok]
    if not ok:
        return None
    plt = _plt()
    corners = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, math.sqrt(3) / 2]])

    def xy(shares: np.ndarray) -> np.ndarray:
        return shares @ corners

    fig, ax = plt.subplots(figsize=(5, 4.6))
    ax.plot(*np.vstack([corners, corners[:1]]).T, "k-", lw=1)
    pts = xy(np.array([[r.mixture.share(d) for d in domains] for r in ok]))
    sc = ax.scatter(pts[:, 0], pts[:, 1], c=[r.objective for r in ok], cmap="viridis_r", s=30)
    fig.colorbar(sc, ax=ax, label="objective")
    if proposal is not None:
        p = xy(np.array([proposal.share(d) for d in domains]))
        ax.scatter([p[0]], [p[1]], marker="*", s=250, c="red", label="proposed")
        ax.legend(loc="upper right")
    for (x, y), d in zip(corners, domains):
        ax.annotate(d, (x, y), textcoords="offset points", xytext=(0, 6 if y > 0 else -14), ha="center")
    ax.set_axis_off()
    ax.set_title("mixtures on the simplex")
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path
