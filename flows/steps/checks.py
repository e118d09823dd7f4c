"""The checks a sweep makes before it trains anything, each failure one line naming the field or file.

`flows.steps.prepare.prepare` calls them: registry names, the objective's metrics, the data root for
the LightEval tasks, every file the corpus points at, and whether the MLflow tracking URI and the Ray address answer.
Reachability is a TCP connect or an HTTP request with a short timeout (`REACH_TIMEOUT_S`), so a server
that is down or an address that drops packets costs seconds, not the minutes of MLflow's HTTP retries or
Ray's connection attempts. This is the one Ray check before training; `flows.trials.local_ray.ray_init`
connects later and names `ray_address` in one line if that still fails. No check trains, writes or
imports Ray.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from mlflow.tracking._tracking_service.utils import _tracking_store_registry

from eval.errors import EvalError
from eval.evaluate import parse_tasks
from flows.steps.spec import OFFLINE_SURROGATES, SWEEP_SURROGATES, SpecError, SweepSpec, data_roots, outside_roots
from flows.tracking.redact import redact_uri
from mixture_search import SAMPLERS
from trainers.data import Corpus
from trainers.data.indexed import bin_path, idx_path
from trainers.presets import PRESETS

REACH_TIMEOUT_S = 3.0
#: default ports of the services a URI or address may leave out
_DEFAULT_PORTS = {"http": 80, "https": 443, "postgresql": 5432, "mysql": 3306, "mssql": 1433, "ray": 10001}
_RAY_GCS_PORT = 6379


def check_names(spec: SweepSpec) -> None:
    """Sampler, surrogate and preset names exist (before anything is built from them)."""
    if spec.search.surrogate in OFFLINE_SURROGATES:
        raise SpecError(
            f"{spec.search.surrogate!r} needs each domain's unique tokens, which a sweep does not give; "
            "use it offline (mixsweep fit --scale ... --domain-tokens ...)",
            where="search.surrogate",
        )
    for where, name, registry in (
        ("search.sampler", spec.search.sampler, SAMPLERS.names()),
        ("search.adaptive", spec.search.adaptive, SAMPLERS.names()),
        ("search.surrogate", spec.search.surrogate, SWEEP_SURROGATES),
        ("proxy.preset", spec.proxy.preset, tuple(PRESETS)),
    ):
        if name is not None and name not in registry:
            raise SpecError(f"unknown name {name!r} (choose from {', '.join(registry)})", where=where)


def check_objective(spec: SweepSpec, domains: tuple[str, ...]) -> None:
    """The objective and the early-stopping metric name metrics a trial reports."""
    known = {"val.loss.mean", "val.bpb.mean", *(f"val.{k}.{d}" for k in ("loss", "bpb") for d in domains)}
    wanted = list(spec.objective.weights or {}) or [spec.objective.metric]
    for name in wanted:
        if name not in known and not (spec.eval.tasks and not name.startswith("val.")):
            raise SpecError(
                f"unknown metric {name!r} (e.g. val.bpb.mean, val.loss.<domain>, or a LightEval metric of eval.tasks)",
                where="objective",
            )
    if spec.early_stopping.enabled and spec.early_stopping.metric not in known:
        raise SpecError(f"unknown metric {spec.early_stopping.metric!r}", where="early_stopping.metric")


def check_eval_tasks(tasks: list[str], domains: tuple[str, ...]) -> None:
    """Every LightEval task of `eval.tasks` exists, and a per-domain local task (`bpb:<domain>`,
    `cloze:<domain>`) names a domain of the sweep: otherwise the mistake would surface only after every
    trial had trained."""
    if not tasks:
        return
    try:
        selection = parse_tasks(tasks)
    except EvalError as exc:
        raise SpecError(str(exc).removeprefix(f"{exc.where}: "), where="eval.tasks") from None
    for name, _ in selection.local:
        domain = name.partition(":")[2]
        if domain and domain not in domains:
            raise SpecError(
                f"{name!r}: {domain!r} is not a domain of the sweep (it has {', '.join(domains)})", where="eval.tasks"
            )


def check_corpus_paths(spec: SweepSpec, corpus: Corpus) -> None:
    """Every file the corpus reads (datasets, tokenizer) lies inside the data root, symlinks resolved."""
    roots = data_roots(spec)
    if not roots:
        return
    paths: list[Path] = []
    for d in corpus.domain_info:
        for s in (*d.train, *d.valid):
            paths += [idx_path(corpus.root / s.prefix), bin_path(corpus.root / s.prefix)]
    if corpus.tokenizer_dir is not None:
        paths.append(Path(corpus.tokenizer_dir))
    for path in paths:
        root = outside_roots(path, roots)
        if root is not None:
            raise SpecError(
                f"the corpus reads {path.resolve()}, outside the data root {root}",
                where=str(Path(spec.corpus).resolve()),
            )


def check_mlflow(uri: str) -> None:
    """A tracking URI MLflow knows how to open, whose server (or database) answers."""
    shown = redact_uri(uri)
    parts = urlsplit(uri)
    scheme = parts.scheme.split("+", 1)[0]  # postgresql+psycopg2 -> postgresql
    known = sorted(k for k in _tracking_store_registry._registry if k)
    if scheme not in _tracking_store_registry._registry:
        raise SpecError(
            f"{shown}: unknown scheme {scheme!r} (MLflow opens {', '.join(known)})", where="mlflow.tracking_uri"
        )
    if scheme in ("http", "https"):
        _http_answers(uri.rstrip("/") + "/health", shown, where="mlflow.tracking_uri")
    elif scheme in ("postgresql", "mysql", "mssql"):
        host, port = parts.hostname, parts.port or _DEFAULT_PORTS[scheme]
        if host:
            _tcp_answers(host, port, f"the MLflow database at {shown}", where="mlflow.tracking_uri")


def check_ray_address(address: str | None) -> None:
    """An explicit Ray address (`ray://host:port` or `host:port`) accepts connections."""
    if not address or address in ("auto", "local"):
        return
    client = address.startswith("ray://")
    rest = address.removeprefix("ray://")
    host, _, port_text = rest.rpartition(":") if ":" in rest else (rest, "", "")
    if not host or (port_text and not port_text.isdigit()):
        raise SpecError(f"{address!r} is not a Ray address (ray://host:10001 or host:6379)", where="ray_address")
    port = int(port_text) if port_text else (_DEFAULT_PORTS["ray"] if client else _RAY_GCS_PORT)
    _tcp_answers(host.strip("[]"), port, f"Ray at {address}", where="ray_address")


# ------------------------------------------------------------------------------------------------


def _tcp_answers(host: str, port: int, what: str, *, where: str) -> None:
    try:
        with socket.create_connection((host, port), timeout=REACH_TIMEOUT_S):
            return
    except TimeoutError:
        reason = f"no answer within {REACH_TIMEOUT_S:g} s"
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
    raise SpecError(f"cannot reach {what}: {reason}", where=where)


def _http_answers(url: str, shown: str, *, where: str) -> None:
    """Any HTTP response counts (a 401 from an authenticating proxy is a server that answers)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="GET"), timeout=REACH_TIMEOUT_S):
            return
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError) as exc:
        cause = getattr(exc, "reason", exc)
        if isinstance(cause, TimeoutError) or isinstance(exc, TimeoutError):
            reason = f"no answer within {REACH_TIMEOUT_S:g} s"
        else:
            reason = getattr(cause, "strerror", None) or " ".join(str(cause).split())
    except ValueError as exc:  # a URL urllib cannot even parse
        reason = " ".join(str(exc).split())
    raise SpecError(f"cannot reach MLflow at {shown}: {reason}", where=where)


__all__ = [
    "REACH_TIMEOUT_S",
    "check_corpus_paths",
    "check_eval_tasks",
    "check_mlflow",
    "check_names",
    "check_objective",
    "check_ray_address",
]
