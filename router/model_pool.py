"""The models a router worker serves, swapped atomically when the lake says they changed.

A :class:`PoolState` is immutable: prod, staging and fallback (loaded by alias, sha256-checked by
the registry), the experiment and its split. A request takes the current state once and uses it
to the end, so a swap never changes a model under a request in flight. A background thread
compares the Delta versions of `model_aliases` and `experiments` (a cheap log read) every
``reload_poll_seconds`` and builds a new state when either moved; ``/admin/reload`` does the same
at once. Models already loaded are reused by version, so a split change costs no unpickling.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from lake.experiments import RUNNING, Experiment, ExperimentStore
from lake.registry import ModelRegistry
from lake.tables import EXPERIMENTS, MODEL_ALIASES
from router import metrics
from serving.scoring import ServedModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoolState:
    prod: ServedModel
    staging: ServedModel | None
    fallback: ServedModel | None
    experiment: Experiment | None
    aliases: dict[str, int]
    rows: dict[int, dict] = field(default_factory=dict)  # registry rows of the served versions
    source: tuple[int | None, int | None] = (None, None)  # (aliases, experiments) Delta versions
    loaded_at: float = 0.0
    # aliases whose model could not be loaded -> why (public text: no paths, no hashes); such an
    # alias is out of service, the others serve on
    disabled: dict[str, str] = field(default_factory=dict)
    prod_alias: str = "prod"  # the alias answering as prod: `previous` or `fallback` when prod's model is broken

    @property
    def running(self) -> Experiment | None:
        """The experiment that splits traffic now: running, and about these very versions."""
        e = self.experiment
        if e is None or e.status != RUNNING or self.staging is None:
            return None
        return e if (e.prod_version, e.staging_version) == (self.prod.version, self.staging.version) else None


class ModelPool:
    """Current models of one worker; thread-safe reads, one loader at a time."""

    def __init__(self, registry: ModelRegistry, default_split_b: float, *, actor: str = "router",
                 freeze_heap: bool = False) -> None:
        self.registry = registry
        self.freeze_heap = freeze_heap  # freeze_heap() after a load that brought a new model
        self.experiments = ExperimentStore(registry.lake)
        self.default_split_b = default_split_b
        self.actor = actor
        self._state: PoolState | None = None
        self._loading = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.on_swap: Callable[[PoolState], None] | None = None

    @property
    def state(self) -> PoolState | None:
        return self._state

    def source_versions(self) -> tuple[int | None, int | None]:
        lake = self.registry.lake
        return lake.version(MODEL_ALIASES), lake.version(EXPERIMENTS)

    def reload(self, force: bool = False) -> PoolState | None:
        """Build a new state if the lake moved (or ``force``); returns the current state."""
        with self._loading:
            source = self.source_versions()
            current = self._state
            if current is not None and not force and current.source == source:
                return current
            aliases = self.registry.aliases()
            if "prod" not in aliases:
                self.last_error = "no prod model in the registry yet"
                return current
            served_now = (current.prod, current.staging, current.fallback) if current is not None else ()
            cache = {m.version: m for m in served_now if m is not None}
            rows = dict(current.rows) if current is not None else {}

            disabled: dict[str, str] = {}
            loaded: list[int] = []

            def served(alias: str) -> ServedModel | None:
                """The alias's model, or None (no such alias, or its model cannot be loaded: then the
                alias is disabled with the reason, and only it)."""
                version = aliases.get(alias)
                if version is None:
                    return None
                if version not in cache:
                    try:
                        row = self.registry.get(version)
                        cache[version] = ServedModel.load(self.registry, version)
                        loaded.append(version)
                    except Exception as exc:  # one broken artifact disables its alias, logged in full
                        log.exception("alias %s: model v%s cannot be loaded; the alias is out of service",
                                      alias, version)
                        disabled[alias] = public_load_error(version, exc)
                        return None
                    rows[version] = row
                return cache[version]

            # prod's model broken: the last prod (`previous`), then the robust `fallback`, answer as prod
            prod, prod_alias = None, "prod"
            for alias in ("prod", "previous", "fallback"):
                prod, prod_alias = served(alias), alias
                if prod is not None:
                    break
            if prod is None:
                self.last_error = "no model can be served: " + "; ".join(f"{a}: {r}" for a, r in disabled.items())
                metrics.set_disabled(disabled)
                return current
            if prod_alias != "prod":
                log.error("prod cannot be served (%s); %s v%s answers as prod", disabled.get("prod"), prod_alias,
                          prod.version)
            staging, fallback = served("staging"), served("fallback")
            metrics.set_disabled(disabled)
            experiment = None
            # no experiment while prod's own model is out: B would be compared with a stand-in
            if staging is not None and staging.version != prod.version and prod_alias == "prod":
                # Opening an experiment writes `experiments`; `source` stays as read before, so the
                # next poll reloads once more rather than missing a change made in between.
                experiment = self.experiments.ensure(prod.version, staging.version, self.default_split_b,
                                                     actor=self.actor)
            state = PoolState(prod, staging, fallback, experiment, aliases,
                              {v: rows[v] for v in {m.version for m in (prod, staging, fallback) if m}},
                              source, time.time(), disabled, prod_alias)
            self._state = state  # one reference assignment: readers see the old or the new state
            self.last_error = "; ".join(f"{a}: {r}" for a, r in disabled.items()) or None
            log.info("serving prod v%s, staging v%s, fallback v%s; experiment %s", prod.version,
                     staging.version if staging else None, fallback.version if fallback else None,
                     f"{experiment.experiment_id} ({experiment.status}, B {experiment.ab_split_b:.0%})"
                     if experiment else None)
            if loaded and self.freeze_heap:
                took = freeze_heap()
                log.info("loaded v%s; heap frozen in %.0f ms (%d objects outside the collector's scans)",
                         ", v".join(map(str, loaded)), took, gc.get_freeze_count())
            if self.on_swap is not None:
                self.on_swap(state)
            return state

    def start_polling(self, interval: float) -> None:
        """Check the lake every ``interval`` seconds in a daemon thread (one per worker process)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll, args=(interval,), name="model-pool-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _poll(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.reload()
            except Exception as exc:  # keep serving the current models; report it on /health
                self.last_error = f"reloading from the lake failed ({type(exc).__name__}); still serving " \
                                  "the previous state (details in the router's log)"
                log.exception("model pool reload failed; still serving the previous state")


def freeze_heap() -> float:
    """Collect once, then move every live object to the collector's permanent generation
    (:func:`gc.freeze`); returns the milliseconds it took.

    A loaded model is hundreds of thousands of long-lived objects (a PyCaret pipeline, its
    encoders' tables, the compiled scorer). Python's full collections traverse all of them: one
    took 143 ms in the middle of a 50-row /predict_batch (bench, in process), and a gevent worker
    answers nothing meanwhile. Frozen objects are never traversed (they are still freed by
    reference counting once unreferenced). Called after a swap that loaded a model: the
    unfreeze + collect first reclaims what the previous models left in reference cycles, a stall
    of the same size once per model load instead of every few hundred requests."""
    began = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return 1000 * (time.perf_counter() - began)


def public_load_error(version: int, exc: Exception) -> str:
    """Why a model version cannot be loaded, in words fit for any client: the kind of fault, never
    a path, a hash or an exception's text (those go to the router's log)."""
    from lake.registry import IntegrityError

    if isinstance(exc, IntegrityError):
        return f"v{version}: its artifact does not match the sha256 the registry holds (changed or corrupted)"
    if isinstance(exc, FileNotFoundError):
        return f"v{version}: its artifact is missing"
    return f"v{version}: its artifact cannot be loaded ({type(exc).__name__})"
