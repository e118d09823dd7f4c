"""`prepare(spec)`: the spec checked against the corpus, the libraries and the servers, and turned into
the typed values every later step uses (`Prepared`). Nothing trains, writes or imports Ray here; every
failure is one line naming the field or file (`flows.steps.checks` holds the individual checks)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.steps.checks import (
    check_corpus_paths,
    check_eval_tasks,
    check_mlflow,
    check_names,
    check_objective,
    check_ray_address,
)
from flows.steps.ladder import Ladder, Rung, build_ladder, epoch_params, repetition_target, run_tokens
from flows.steps.spec import MlflowSpec, SpecError, SweepSpec
from flows.trials.result import TrialContext, trial_key
from mixture_search import SAMPLERS, SURROGATES
from mixture_search.catalog import DomainCatalog, load_catalog
from mixture_search.errors import SearchError
from mixture_search.formats import read_mixture, read_openseek
from mixture_search.mixture import Mixture
from mixture_search.phases import PhasedSpace
from mixture_search.schedule import Schedule
from mixture_search.space import ANCHORS, SearchSpace
from trainers.budget import TrainBudget
from trainers.config import ProxyConfig
from trainers.data import Corpus
from trainers.presets import preset

#: by default the anchors take at most 1 / ANCHOR_ROUND of the first round
ANCHOR_ROUND = 4


@dataclass(frozen=True)
class Prepared:
    """A checked spec with everything derived from it and the corpus (typed, picklable values)."""

    spec: SweepSpec
    corpus_dir: Path
    domains: tuple[str, ...]
    data_hash: str
    sweep_key: str
    proxy: ProxyConfig
    budget: TrainBudget
    params: int
    total_steps: int
    tracking_uri: str
    space: SearchSpace
    catalog: DomainCatalog  # the corpus's, train split
    #: the target's tokens when proxies are repetition-matched (`flows.steps.ladder`), else None
    repetition: int | None = None
    #: the proxy ladder of `proxy.scales` (its smallest scale is `proxy` and `budget`), else None
    ladder: Ladder | None = None
    #: the first round's reference mixtures (`search.anchors`): (name, mixture) in the space
    anchors: tuple[tuple[str, Mixture], ...] = ()

    # -- phases: a phased sweep's points are schedules in their flat form (cells p<k>.<domain>) ----------
    @property
    def phased(self) -> bool:
        return isinstance(self.space, PhasedSpace)

    @property
    def cells(self) -> tuple[str, ...]:
        """The names of a trial's mixture: the domains, or with `space.phases` the cells `p<k>.<domain>`
        (each the run's token share of a domain in a phase). What samplers, surrogates and Ray see."""
        return self.space.domains

    def schedule(self, mixture: Mixture) -> Schedule:
        """A trial's (or the proposal's) schedule: its phases over the domains (one phase when static)."""
        return Schedule.from_flat(mixture) if self.phased else Schedule.constant(mixture)

    def weight_params(self, mixture: Mixture) -> dict[str, str] | None:
        """MLflow params of a phased trial: each phase's shares `w.p<k>.<domain>` and ends
        `phase.p<k>.until` (None when static: the tracker's `w.<domain>`, as always)."""
        if not self.phased:
            return None
        return {k: f"{v:.6f}" for k, v in self.schedule(mixture).params().items()}

    # -- scale: repetition-matched proxies and ladders (flows.steps.ladder) ----------------------------
    def rung(self, scale: int | None = None, stage: str | None = None) -> Rung | None:
        """The ladder's scale a training runs at: `scale` (default the smallest), the largest for a
        confirmation run; None without a ladder."""
        if self.ladder is None:
            return None
        if stage == "confirm":  # flows.steps.confirm.CONFIRM_STAGE (it imports this module)
            return self.ladder.largest
        return self.ladder.rungs[scale or 0]

    def scale_params(
        self, mixture: Mixture, scale: int | None = None, stage: str | None = None
    ) -> dict[str, dict[str, Any]]:
        """MLflow params of a training: `scale.{index,params,tokens}` with a ladder, and each domain's
        `epochs.proxy.<domain>` / `epochs.target.<domain>` when repetition-matched (empty otherwise)."""
        rung = self.rung(scale, stage)
        proxy, budget = (rung.proxy, rung.budget) if rung else (self.proxy, self.budget)
        out: dict[str, dict[str, Any]] = {}
        if rung is not None:
            out["scale"] = rung.params_dict()
        if self.repetition is not None and not self.phased:
            out["epochs"] = epoch_params(self.catalog, mixture, proxy, budget, self.repetition)
        return out

    def trial_context(self, scale: int | None = None, stage: str | None = None) -> TrialContext:
        """What every trial of this sweep (at one scale of its ladder) shares."""
        spec = self.spec
        rung = self.rung(scale, stage)
        return TrialContext(
            corpus=str(self.corpus_dir),
            domains=self.cells,
            ramp=spec.space.ramp if self.phased else None,
            proxy=rung.proxy if rung else self.proxy,
            budget=rung.budget if rung else self.budget,
            target_tokens=self.repetition,
            backend=spec.backend,
            trials_dir=str(spec.out_dir / "trials"),
            tracking_uri=self.tracking_uri,
            objective=spec.objective,
            eval=spec.eval,
            resources=spec.resources,
            early_stop_metric=spec.early_stopping.metric if spec.early_stopping.enabled else None,
        )

    def trial_key(
        self, mixture: Mixture, *, seed: int | None = None, stage: str | None = None, scale: int | None = None
    ) -> str:
        """The key of a training of `mixture` in this sweep: a sweep trial (no `seed`, no `stage`), or a
        run of another stage (`stage="replicate"`, `"confirm"`) trained with `seed` instead of the budget's. The stage
        is part of the key, so such a run never takes a trial's place. With a ladder, `scale` (or the
        confirmation's largest scale) sets the proxy and budget; repetition matching adds the target's tokens."""
        spec = self.spec
        rung = self.rung(scale, stage)
        proxy, budget = (rung.proxy, rung.budget) if rung else (self.proxy, self.budget)
        extra: dict[str, object] = {"backend": spec.backend, "eval": spec.eval.model_dump()}
        if self.repetition is not None:  # only then: keys of sweeps without it are unchanged
            extra["repetition"] = self.repetition
        if rung is not None and rung.index > 0:
            extra["scale"] = rung.index
        if stage is not None:
            extra["stage"] = stage
        if self.phased and spec.space.ramp:  # a static sweep's (and a step schedule's) keys are unchanged
            extra["ramp"] = spec.space.ramp
        return trial_key(
            mixture,
            proxy=proxy,
            budget=budget if seed is None else dataclasses.replace(budget, seed=seed),
            data_hash=self.data_hash,
            seed=spec.seed if seed is None else seed,
            extra=extra,
        )


def tracking_uri_of(mlflow: MlflowSpec, out_dir: Path) -> str:
    """Where a sweep's (or a validation's) runs are tracked: `mlflow.tracking_uri`, else `MLFLOW_TRACKING_URI`,
    else SQLite in its output folder."""
    return mlflow.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{out_dir / 'mlflow.db'}"


def prepare(spec: SweepSpec) -> Prepared:
    """Everything that can be wrong with a sweep, before any training; raises a one-line `MixSweepError`."""
    check_names(spec)
    corpus = Corpus.load(spec.corpus)
    catalog = corpus.catalog
    names = list(catalog.units("domain"))
    domains = tuple(spec.space.domains or names)
    unknown = [d for d in domains if d not in names]
    if unknown:
        raise SpecError(
            f"{unknown[0]!r} is not a domain of the corpus (it has {', '.join(names)})", where="space.domains"
        )
    for key in (*spec.space.bounds, *spec.space.pinned):
        if key not in domains:
            raise SpecError(
                f"{key!r} is not a domain of the sweep",
                where="space.bounds" if key in spec.space.bounds else "space.pinned",
            )
    tokens = catalog.tokens("domain")
    try:
        space: SearchSpace = SearchSpace(
            domains=domains,
            tokens=[float(tokens[d] or 0) for d in domains],
            target_tokens=spec.space.target_tokens,
            max_epochs=spec.space.max_epochs,
            bounds=dict(spec.space.bounds),
            pinned=dict(spec.space.pinned),
            prior=None if spec.space.prior == "tokens" else [1.0] * len(domains),
        )
        if spec.space.phases is not None:
            space = phased_space(spec, space)
        direction = {"maximize": spec.objective.maximize}
        SAMPLERS.build(spec.search.sampler, space=space, seed=spec.seed, **{**spec.search.options, **direction})
        if spec.search.adaptive and spec.search.rounds > 1:
            options = {**spec.search.adaptive_options, **direction}
            SAMPLERS.build(spec.search.adaptive, space=space, seed=spec.seed, **options)
    except SearchError as exc:
        if str(exc).startswith("search space is empty"):
            raise SpecError(str(exc), where="space") from None
        raise
    SURROGATES.build(spec.search.surrogate)
    proxy = preset(spec.proxy.preset, **spec.proxy.overrides).resolve_vocab(int(corpus.vocab_size))
    budget = spec.budget
    ladder, repetition = check_scale(spec, proxy, budget, int(corpus.vocab_size))
    if ladder is not None:  # the smallest scale is where the search trains
        proxy, budget = ladder.rungs[0].proxy, ladder.rungs[0].budget
    check_objective(spec, domains)
    check_eval_tasks(spec.eval.tasks, domains)
    if spec.export.openseek_template is not None:
        read_mixture(spec.export.openseek_template)
    check_corpus_paths(spec, corpus)
    if spec.export.catalog is not None:
        load_catalog(spec.export.catalog)
    tracking_uri = tracking_uri_of(spec.mlflow, spec.out_dir)
    check_mlflow(tracking_uri)
    check_ray_address(spec.ray_address)
    return Prepared(
        spec=spec,
        corpus_dir=Path(spec.corpus).resolve(),
        domains=domains,
        data_hash=str(corpus.data_hash),
        sweep_key=spec.sweep_key(str(corpus.data_hash)),
        proxy=proxy,
        budget=budget,
        params=int(proxy.param_counts().total),
        total_steps=budget.total_steps(proxy.seq_len),
        tracking_uri=tracking_uri,
        space=space,
        catalog=catalog,
        repetition=repetition,
        ladder=ladder,
        anchors=anchors_of(spec, space),
    )


def anchors_of(spec: SweepSpec, space: SearchSpace | PhasedSpace) -> tuple[tuple[str, Mixture], ...]:
    """The first round's anchors (`search.anchors`), as (name, mixture) inside the space. By default
    natural and uniform when the mixtures are static and the two take at most a quarter of the first
    round (`per_round` >= 8): in a smaller round they displace the sampler's exploration (seen on a real
    sweep of 2 x 4 trials). A phased sweep has none (its points are schedules: lengths as well as shares)."""
    names: Sequence[str] | None = spec.search.anchors
    if isinstance(space, PhasedSpace):
        if names:
            raise SpecError(
                "a phased sweep searches schedules, not static mixtures: leave anchors out", where="search.anchors"
            )
        return ()
    if names is None:
        names = ANCHORS if spec.search.per_round >= ANCHOR_ROUND * len(ANCHORS) else ()
    out: list[tuple[str, Mixture]] = []
    for name in names:
        mixture = space.to_mixture(space.anchor(name))
        if all(m.key != mixture.key for _, m in out):  # natural is uniform on a corpus of equal domains
            out.append((name, mixture))
    return tuple(out)


def check_scale(
    spec: SweepSpec, proxy: ProxyConfig, budget: TrainBudget, vocab: int
) -> tuple[Ladder | None, int | None]:
    """(the ladder of `proxy.scales`, the target's tokens when proxies are repetition-matched), each
    checked (one line naming the field): scales that grow, a target no smaller than any proxy."""
    ladder = build_ladder(spec, vocab)
    repetition = repetition_target(spec)
    if repetition is not None:
        largest = ladder.largest.tokens if ladder is not None else run_tokens(proxy, budget)
        if repetition < largest:
            raise SpecError(
                f"the target's {repetition:,} tokens are fewer than the proxy's {largest:,}: a target "
                "smaller than its proxy repeats nothing they do not",
                where="space.target_tokens",
            )
    return ladder, repetition


def phased_space(spec: SweepSpec, base: SearchSpace) -> PhasedSpace:
    """The space of `space.phases` over `base`: every phase's domains checked, an empty phase or caps no
    schedule meets are one line naming `space.phases[k].<field>`, and a ramp must fit the shortest phase."""
    assert spec.space.phases is not None
    if spec.proxy.scales is not None:  # the ladder's scale-aware surrogates take static shares
        raise SpecError(
            "a ladder of proxy scales cannot search schedules yet: leave out proxy.scales", where="space.phases"
        )
    for k, phase in enumerate(spec.space.phases):
        for field, names in (("bounds", phase.bounds), ("pinned", phase.pinned)):
            unknown = [d for d in names if d not in base.domains]
            if unknown:
                raise SpecError(f"{unknown[0]!r} is not a domain of the sweep", where=f"space.phases[{k}].{field}")
    try:
        space = PhasedSpace(base=base, phases=tuple(p.as_phase() for p in spec.space.phases))
    except SearchError as exc:
        text = str(exc)
        message = text[len(exc.where) + 2 :] if exc.where and text.startswith(f"{exc.where}: ") else text
        raise SpecError(message, where=f"space.{exc.where}" if exc.where else "space.phases") from None
    template = spec.export.openseek_template
    if template is not None and read_openseek(template).openseek.experiment_path is None:  # type: ignore[union-attr]
        raise SpecError(
            "a schedule is exported as one OpenSeek experiment + task config per stage, so the template needs its "
            "experiment config (a ../config_*.yaml naming this task)",
            where="export.openseek_template",
        )
    shortest = space.length_range[:, 0]
    if spec.space.ramp and spec.space.ramp >= float(shortest.min()):
        k = int(shortest.argmin())
        raise SpecError(
            f"a ramp of {spec.space.ramp:g} of the run is not shorter than phases[{k}] (it can be "
            f"{float(shortest[k]):.4g} of the run)",
            where="space.ramp",
        )
    return space


__all__ = ["Prepared", "anchors_of", "phased_space", "prepare"]
