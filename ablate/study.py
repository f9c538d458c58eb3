"""Running a study: create or resume the Optuna study, train each trial with the Trainer, report
its objective per epoch for pruning, record attributes and artifacts, keep the global budget.

Outcomes (the ``outcome`` user attribute of every trial):

- ``completed`` / ``pruned``: Optuna states COMPLETE / PRUNED;
- ``diverged``: the loss became NaN or infinite; FAIL with the reason;
- ``failed``: the run finished without a finite objective (NaN samples, say); FAIL with it;
- ``rejected`` (a constraint fails) and ``invalid`` (the point fails the components' own checks):
  FAIL before any training, reason recorded;
- ``interrupted``: Ctrl-C or SIGTERM. FAIL with the reason; the same point is enqueued again
  with the same seed and run folder, so the next ``ablate run`` resumes it from its last
  checkpoint instead of starting over. A trial whose worker died is failed by another worker and
  queued again the same way: at once when the worker ran on this machine (its process is gone),
  else after ``heartbeat_grace`` seconds without a heartbeat; its retry records why
  (``retry_reason``).
- ``environment``: the machine failed the trial (a full disk, a read-only or failing file
  system, a full database): FAIL, not counted, queued again; the study stops and says what
  happened, since every trial would hit it.

Budget (see ablate.study_budget): ``trials`` counts trials that trained, over every invocation
and every worker; ``timeout`` their training time. A trial that starts within the budget
finishes; workers start one only while completed plus running trials stay within ``trials``
(see ablate.claims).

The study folder is a trust boundary: its trial folders may hold no symbolic link, and only
files of a trial's own folder go to the artifact store, whatever its records say.
"""

from __future__ import annotations

import errno
import math
import re
import time
import traceback
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, Protocol

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

import ablate
from ablate import __version__, metrics_log
from ablate.atomic import remove_leftovers, write_text_atomic
from ablate.claims import SAMPLER_SEED_STRIDE, run_trials
from ablate.config import DEFAULT_COMPONENTS, RunConfig
from ablate.errors import AblateError, ConfigError
from ablate.plugin_faults import blame, run_components
from ablate.plugin_host import PluginHost
from ablate.replicates import training_run
from ablate.run_info import RunInfo
from ablate.safe_paths import inside, refuse_symlinks, within
from ablate.storage import (
    file_path,
    masked,
    open_storage,
    refuse_in_memory,
    worker_identity,
)
from ablate.study_artifacts import TrialArtifacts, artifact_store
from ablate.study_budget import (
    ALIVE_ATTR,
    COUNTED,
    POINT_ATTR,
    Budget,
    counts,
    done,
    duration,
    remaining,
    spent_seconds,
)
from ablate.study_config import StudySpec
from ablate.tracking import TrackingContext, tracking
from ablate.training import DivergedError, EarlyStop, Interrupted, Reporter

__all__ = ["COUNTED", "Budget", "counts", "duration", "remaining", "load_existing",
           "run_study"]
MAX_CONSECUTIVE_REJECTIONS = 100
ERROR_LOG = "error.txt"
"""Where a trial that failed with an unexpected exception keeps its traceback."""
DEFINITION_WAIT_SECONDS = 30  # how long a joining worker waits for the creator's definition


class StudyError(AblateError):
    """The study cannot run as asked (changed definition, leftover files, hopeless constraints)."""

    exit_code = 2


class TrialFailed(Exception):
    """A trial ended without a value; its ``outcome`` and ``reason`` are in its user attrs."""


class EnvironmentFailure(AblateError):
    """The machine failed a trial (a full disk, say): nothing is lost, the trial runs again."""

    exit_code = 2


ENVIRONMENT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO)
ENVIRONMENT_MESSAGES = re.compile(r"database or disk is full|disk I/O error|readonly database|"
                                  r"No space left on device|Disk quota exceeded", re.IGNORECASE)


def environment_problem(exc: BaseException | None) -> str | None:
    """What the machine did wrong, if ``exc`` (or what caused it: Optuna wraps the database's
    errors) is an environment failure rather than a result."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in ENVIRONMENT_ERRNOS:
            reason = exc.strerror or errno.errorcode.get(exc.errno or 0, "an I/O error")
            return f"{reason} writing {exc.filename}" if exc.filename else reason
        match = ENVIRONMENT_MESSAGES.search(str(exc))
        if match:
            return f"the study storage failed: {match[0]}"
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


class StudyReporter(Reporter, Protocol):
    """A Trainer reporter that is also told about the study's trials (see study_display)."""

    def begin(self, spec: StudySpec, done: int, best: str | None) -> None: ...

    def trial_started(self, number: int, params: Mapping[str, Any], label: str | None) -> None: ...

    def trial_finished(self, trial: FrozenTrial, done: int, best: str | None,
                       spent: float) -> None: ...

    def end(self) -> None: ...


def load_existing(spec: StudySpec) -> tuple[optuna.Study, optuna.storages.BaseStorage]:
    """The study of a study file, for show and dashboard; an error if it never ran."""
    refuse_in_memory(spec.storage)
    path = file_path(spec.storage)
    if path is not None and not path.exists():
        raise StudyError(f"study {spec.name!r} has not run yet (no {path}); start it "
                         f"with: ablate run {spec.path}")
    storage = open_storage(spec.storage)
    try:
        with quiet_optuna():
            return optuna.load_study(study_name=spec.name, storage=storage), storage
    except KeyError:
        raise StudyError(f"{masked(spec.storage)} holds no study named {spec.name!r}; start it "
                         f"with: ablate run {spec.path}") from None


def best_summary(spec: StudySpec, study: optuna.Study) -> str | None:
    """'trial 3: fid 41.2' for one objective, the Pareto front's size for several."""
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if not complete:
        return None
    if spec.multi_objective:
        return f"{len(study.best_trials)} trials on the Pareto front"
    best = study.best_trial
    return f"trial {best.number}: {spec.objectives[0].metric} {best.value:.4g}"


def run_study(spec: StudySpec, display: StudyReporter, *, worker: int = 0) -> optuna.Study:
    """Create or resume the study and run trials until the global budget is spent; other
    workers (``worker`` is this one's index: its sampler seed) may share the budget."""
    storage = open_storage(spec.storage, heartbeat=spec.heartbeat, on_stale=_retry_stale)
    check_study_folder(spec)
    remove_leftovers(spec.folder)
    with quiet_optuna(), environment_failures(spec):
        study = open_study(spec, storage)
        existing = len(study.get_trials(deepcopy=False))
        study.sampler = make_sampler(spec, offset=existing + SAMPLER_SEED_STRIDE * worker)
        study.pruner = make_pruner(spec)
        budget = remaining(spec, study)
        display.begin(spec, done(study), best_summary(spec, study))
        if budget.spent:
            display.end()
            return study
        runner = TrialRunner(spec, study, storage, display, worker=worker)
        with _observing(spec.host, runner):
            try:
                run_trials(spec, study, storage, runner, stop=runner.over, catch=(TrialFailed,),
                           callbacks=[runner.after_trial], retry=enqueue_dead)
            except Interrupted as exc:
                raise Interrupted(f"study {spec.name!r} interrupted; the running trial was "
                                  f"saved and queued again: ablate run {spec.path} resumes "
                                  f"it", signum=exc.signum) from None
            finally:
                display.end()
        if runner.rejections >= MAX_CONSECUTIVE_REJECTIONS:
            raise StudyError(f"the last {runner.rejections} suggested points were all rejected "
                             f"by the constraints or the components' checks; widen the search "
                             f"ranges or relax {spec.path}'s constraints")
    return study


@contextmanager
def environment_failures(spec: StudySpec) -> Iterator[None]:
    """A full disk or database met anywhere in the study (Optuna's own writes included) is
    one EnvironmentFailure saying what happened, not a traceback."""
    try:
        yield
    except AblateError:
        raise
    except Exception as exc:
        problem = environment_problem(exc)
        if problem is None:
            raise
        raise EnvironmentFailure(
            f"study {spec.name!r} stopped: {problem} ({masked(spec.storage)}); free space and "
            f"run ablate run {spec.path} again: no finished trial is lost and the running one "
            f"is retried") from None


def make_sampler(spec: StudySpec, *, offset: int) -> optuna.samplers.BaseSampler:
    """The sampler, seeded by the study seed plus the trials already run, so a resumed study
    does not replay the first invocation's random draws (QMC instead continues its sequence)."""
    options = spec.sampler.options
    kwargs = options.kwargs()
    if options.seeded:
        kwargs["seed"] = spec.seed + (offset if options.reseeded else 0)
    if spec.sampler.name == "grid":
        # Every grid trial is queued with its point (see ablate.claims): the sampler only
        # checks that the point belongs to the grid.
        return optuna.samplers.GridSampler(spec.space.grid(), **kwargs)
    return getattr(optuna.samplers, options.optuna_class)(**kwargs)


def check_study_folder(spec: StudySpec) -> None:
    """The study's trial and artifact folders lie in its folder and hold no planted link."""
    for folder, what in ((spec.trials_dir, "the trials folder"),
                         (spec.artifacts_dir, "the artifact store")):
        within(spec.folder, folder, what=what)
        refuse_symlinks(folder, what=what)


def make_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    options = spec.pruner.options
    return getattr(optuna.pruners, options.optuna_class)(**options.kwargs())


@contextmanager
def quiet_optuna() -> Iterator[None]:
    """ablate reports trials itself: keep Optuna's log lines and warnings off the terminal."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.filterwarnings("ignore", module="optuna")
            yield
    finally:
        optuna.logging.set_verbosity(level)


class TrialRunner:
    """The objective function: one trial trained, scored, recorded and uploaded."""

    def __init__(self, spec: StudySpec, study: optuna.Study,
                 storage: optuna.storages.BaseStorage, display: StudyReporter, *,
                 worker: int = 0) -> None:
        self.spec = spec
        self.worker = worker
        self.study = study
        self.storage = storage
        self.display = display
        self.store = artifact_store(spec.artifacts_dir)
        self.rejections = 0
        self.parameter_count: int | None = None

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        spec = self.spec
        # First of all: who owns this trial, so that its death is noticed (see ablate.claims).
        trial.set_user_attr("worker", worker_identity(self.worker))
        seed = trial.user_attrs.get("seed", spec.trial_seed(trial.number))
        point = spec.space.sample(trial)
        label = trial.user_attrs.get("baseline") or spec.baseline_label(point)
        if label is not None:
            trial.set_user_attr("baseline", label)
        self.display.trial_started(trial.number, point, label)
        try:
            config, evaluation = spec.resolve(point, seed)
        except ConfigError as exc:
            self._reject(trial, "invalid", f"{exc.key}: {exc.message}")
        broken = spec.violated(config)
        if broken is not None:
            self._reject(trial, "rejected", f"violates {broken.text}")
        self.rejections = 0
        run_dir = inside(spec.trials_dir, trial.user_attrs.get("run_dir") or
                         spec.trials_dir / f"trial_{trial.number:04d}", what="run folder")
        refuse_symlinks(run_dir, what="the run folder")
        trial.set_user_attr("seed", seed)
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("config", config.to_dict())
        if evaluation is not None:
            trial.set_user_attr("eval", evaluation.to_dict())
        trial.set_user_attr("versions", versions(config, spec.host))
        trial.set_user_attr("replicates", spec.replicates)
        artifacts = TrialArtifacts(self.store, trial, run_dir)
        steps = planned_steps(config)
        trainer = training_run(config, run_dir, spec.replicates, total_steps=steps,
                               host=spec.host, reporter=self.display, evaluation=evaluation,
                               epoch_callback=EpochReports(spec, trial, run_dir, artifacts,
                                                           steps))
        self.parameter_count = None
        started = time.perf_counter()
        try:
            context = TrackingContext(spec.name, spec.folder,
                                      {"study": spec.name, "trial": str(trial.number)})
            with tracking(spec.host, spec.trackers, context):
                trainer.run(resume="retry_of" in trial.user_attrs)
        except EarlyStop:
            self._finish(trial, run_dir, artifacts, started, "pruned", None)
            raise optuna.TrialPruned() from None
        except DivergedError as exc:
            self._finish(trial, run_dir, artifacts, started, "diverged", str(exc))
            raise TrialFailed(str(exc)) from None
        except (Interrupted, KeyboardInterrupt) as exc:
            stopped = exc.state if isinstance(exc, Interrupted) else "interrupted by the user"
            reason = f"{stopped}; ablate run {spec.path} continues it"
            self._finish(trial, run_dir, artifacts, started, "interrupted", reason)
            enqueue_retry(self.study, trial.number, trial.params, trial.user_attrs)
            raise
        except AblateError:
            raise  # missing data, unreadable checkpoint: every trial would hit it; stop and say
        except Exception as exc:
            problem = environment_problem(exc)
            if problem is not None:  # not a result: nothing counted, the trial runs again
                self._record_environment_failure(trial, started, problem)
                raise EnvironmentFailure(
                    f"trial {trial.number} stopped: {problem}; free space (or fix the file "
                    f"system) and run ablate run {spec.path} again: it resumes from its last "
                    f"checkpoint, and no finished trial is lost") from None
            # a plugin's or the numerics' bug: this trial only (named when a plugin's code raised)
            culprit = blame(exc, run_components(config, evaluation, spec.host), spec.host)
            reason = (f"{culprit.describe()} raised " if culprit else "") + \
                f"{type(exc).__name__}: {exc} (traceback in {run_dir / ERROR_LOG})"
            write_text_atomic(run_dir / ERROR_LOG, traceback.format_exc())
            self._finish(trial, run_dir, artifacts, started, "failed", reason)
            raise TrialFailed(reason) from None
        records = metrics_log.read(run_dir / "metrics.jsonl")
        values = [objective_value(records, o.metric) for o in spec.objectives]
        if any(v is None or not math.isfinite(v) for v in values):
            reason = f"no finite {', '.join(o.metric for o in spec.objectives)} in the records"
            self._finish(trial, run_dir, artifacts, started, "failed", reason)
            raise TrialFailed(reason)
        self._finish(trial, run_dir, artifacts, started, "completed", None)
        return values[0] if len(values) == 1 else values

    def after_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.display.trial_finished(trial, done(study), best_summary(self.spec, study),
                                    spent_seconds(study))

    def over(self) -> bool:
        """Whether the study is over beyond its budget: the constraints look hopeless."""
        return self.rejections >= MAX_CONSECUTIVE_REJECTIONS

    def _record_environment_failure(self, trial: optuna.Trial, started: float,
                                    problem: str) -> None:
        """Book what can still be booked (the disk or database may refuse even that: then the
        trial stays RUNNING and the next start retries it, its process being gone)."""
        try:
            trial.set_user_attr("outcome", "environment")
            trial.set_user_attr("reason", problem)
            trial.set_user_attr("wall_seconds", time.perf_counter() - started)
            enqueue_retry(self.study, trial.number, trial.params, trial.user_attrs,
                          f"trial {trial.number} stopped: {problem}")
        except Exception:  # noqa: BLE001, S110 - the storage is failing too; see docstring
            pass

    @ablate.hookimpl
    def run_start(self, run: RunInfo) -> None:
        self.parameter_count = run.parameter_count

    def _reject(self, trial: optuna.Trial, outcome: str, reason: str) -> NoReturn:
        self.rejections += 1
        trial.set_user_attr("outcome", outcome)
        trial.set_user_attr("reason", reason)
        raise TrialFailed(reason)

    def _finish(self, trial: optuna.Trial, run_dir: Path, artifacts: TrialArtifacts,
                started: float, outcome: str, reason: str | None) -> None:
        """Record what the run did and upload its files, whatever way it ended."""
        records = metrics_log.read(run_dir / "metrics.jsonl")
        artifacts.final(run_dir, records, [o.metric for o in self.spec.objectives])
        trial.set_user_attr("outcome", outcome)
        if reason is not None:
            trial.set_user_attr("reason", reason)
        trial.set_user_attr("wall_seconds", time.perf_counter() - started)
        if self.parameter_count is not None:
            trial.set_user_attr("parameter_count", self.parameter_count)
        if records:
            last = records[-1]
            seconds = sum(r["train_seconds"] for r in records)
            images = sum(r["images_per_s"] * r["train_seconds"] for r in records)
            trial.set_user_attr("epochs", last["epoch"])
            trial.set_user_attr("steps", last["step"])
            trial.set_user_attr("train_seconds", seconds)
            trial.set_user_attr("images_per_s", images / seconds if seconds > 0 else None)
            for o in self.spec.objectives:
                interval = confidence_interval(records, o.metric)
                if interval is not None:
                    trial.set_user_attr(f"{o.metric}_interval", interval)


class EpochReports:
    """The Trainer's epoch callback: uploads new grids, reports the objective, prunes."""

    def __init__(self, spec: StudySpec, trial: optuna.Trial, run_dir: Path,
                 artifacts: TrialArtifacts, last_step: int) -> None:
        self.spec = spec
        self.trial = trial
        self.last_step = last_step
        self.log = run_dir / "metrics.jsonl"
        self.artifacts = artifacts
        self.reported: set[int] = set()

    def __call__(self, record: dict[str, Any]) -> None:
        self.trial.set_user_attr(ALIVE_ATTR, time.time())  # books a dead worker's time
        # The log holds the epochs before a resume too, so a continued trial reports them all.
        records = metrics_log.read(self.log)
        self.artifacts.grids(records)
        if self.spec.multi_objective:
            return
        metric = self.spec.objectives[0].metric
        new = False
        for i, r in enumerate(records):
            value = objective_value(records[: i + 1], metric) if metric in r else None
            if value is not None and r["epoch"] not in self.reported:
                self.trial.report(value, r["epoch"])
                self.reported.add(r["epoch"])
                new = True
        # Pruning after the last epoch would only relabel a finished trial.
        if new and record["step"] < self.last_step and self.trial.should_prune():
            raise EarlyStop


def planned_steps(config: RunConfig) -> int:
    """The optimisation steps the Trainer will run for this configuration."""
    available = len(config.dataset.load("train").images)
    images = min(config.subset, available) if config.subset else available
    return config.steps or config.epochs * (images // config.batch_size)


def objective_value(records: Sequence[dict[str, Any]], metric: str) -> float | None:
    """The run's value of an objective: the latest record's, or total time for train_seconds."""
    if metric == "train_seconds":
        return sum(r["train_seconds"] for r in records) if records else None
    scored = [r[metric] for r in records if metric in r]
    return float(scored[-1]) if scored else None


def confidence_interval(records: Sequence[dict[str, Any]], metric: str) -> list[float] | None:
    """The latest record's 95% interval of a metric, when the metric records one."""
    scored = [r for r in records if f"{metric}_low" in r and f"{metric}_high" in r]
    return [scored[-1][f"{metric}_low"], scored[-1][f"{metric}_high"]] if scored else None


def versions(config: RunConfig, host: PluginHost) -> dict[str, Any]:
    """ablate, torch, Optuna, and the plugin (distribution and version) behind each component."""
    plugins = {}
    for family in DEFAULT_COMPONENTS:
        name = getattr(config, family).name
        provenance = host.registry.entries[family][name].provenance
        plugins[f"{family}.{name}"] = {"plugin": provenance.plugin,
                                       "distribution": provenance.distribution,
                                       "version": provenance.version}
    return {"ablate": __version__, "torch": torch.__version__, "optuna": optuna.__version__,
            "plugins": plugins}


def enqueue_retry(study: optuna.Study, number: int, params: Mapping[str, Any],
                  attrs: Mapping[str, Any], reason: str | None = None) -> None:
    """Queue an unfinished trial's point again, keeping its seed and run folder (to resume)."""
    keep = {k: attrs[k] for k in ("seed", "run_dir", "baseline") if k in attrs}
    why = {"retry_reason": reason} if reason else {}
    point = dict(params) or dict(attrs.get(POINT_ATTR) or {})
    study.enqueue_trial(point, user_attrs={**keep, **why, "retry_of": number, POINT_ATTR: point})


def enqueue_dead(study: optuna.Study, trial: FrozenTrial, reason: str) -> None:
    """Queue again the point of a trial whose worker died; a point never sampled (the worker
    died before suggesting it) has nothing to retry."""
    if trial.params or trial.user_attrs.get(POINT_ATTR):
        enqueue_retry(study, trial.number, trial.params, trial.user_attrs, reason)


def _retry_stale(study: optuna.Study, trial: FrozenTrial) -> None:
    """A trial whose worker stopped sending heartbeats is failed by Optuna, retried here."""
    worker = trial.user_attrs.get("worker", {})
    where = f" (worker {worker.get('index')} on {worker.get('host')}, pid {worker.get('pid')})" \
        if worker else ""
    enqueue_dead(study, trial, f"trial {trial.number}'s worker stopped sending heartbeats{where}")


def open_study(spec: StudySpec, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """Create the study, or load it; of several workers starting at once exactly one creates
    it (the storage refuses a second study of that name) and the others wait for its
    definition, so baselines are queued once."""
    try:
        study = optuna.create_study(storage=storage, study_name=spec.name,
                                    directions=[o.direction for o in spec.objectives])
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=spec.name, storage=storage)
        deadline = time.monotonic() + DEFINITION_WAIT_SECONDS
        while "definition" not in study.user_attrs and time.monotonic() < deadline:
            time.sleep(0.2)
    _adopt(spec, study)
    return study


def _adopt(spec: StudySpec, study: optuna.Study) -> None:
    """A new study records its definition and gets its baselines; an old one must match."""
    stored = study.user_attrs.get("definition")
    if stored is None:
        _check_leftovers(spec)
        study.set_user_attr("definition", dict(spec.definition))
        study.set_user_attr("study_file", str(spec.path))
        study.set_metric_names([o.metric for o in spec.objectives])
        # The grid trains every point, baselines included, and counts a queued trial as a
        # point of its own, so a grid's baselines are only labelled (see TrialRunner).
        for baseline in spec.baselines if spec.sampler.name != "grid" else ():
            study.enqueue_trial(dict(baseline.point), user_attrs={"baseline": baseline.label})
    elif stored != spec.definition:
        changed = [k for k in spec.definition if stored.get(k) != spec.definition[k]]
        raise StudyError(f"{spec.path}: the [{'], ['.join(changed)}] part changed since study "
                         f"{spec.name!r} started, so its trials would not compare; give the "
                         f"study a new [study] name (or restore the file)")


def _check_leftovers(spec: StudySpec) -> None:
    if spec.trials_dir.is_dir() and any(spec.trials_dir.iterdir()):
        raise StudyError(f"{spec.trials_dir} holds trials of a study that is not in "
                         f"{masked(spec.storage)}; move it away or choose another [study] "
                         f"output")


@contextmanager
def _observing(host: PluginHost, runner: TrialRunner) -> Iterator[None]:
    """Register the runner as an observer plugin for the study (parameter counts)."""
    name = "ablate-study-runner"
    host.manager.register(runner, name=name)
    try:
        yield
    finally:
        host.manager.unregister(name=name)
