"""Run files: a ``[run]`` table and an optional ``[eval]`` table, validated together."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ablate.config import RunConfig, check_keys, check_shape, parse_run, read_toml
from ablate.errors import Collector, ConfigError
from ablate.eval_config import EvalConfig, parse_eval
from ablate.overrides import apply_overrides
from ablate.plugin_host import PluginHost
from ablate.tracking import Tracker, split_trackers


@dataclass(frozen=True)
class RunFile:
    run: RunConfig
    evaluation: EvalConfig | None
    trackers: tuple[Tracker, ...] = ()  # [run] trackers: observers, not part of the model


def load_run_file(path: Path, host: PluginHost | None = None,
                  overrides: Sequence[str] = ()) -> RunFile:
    """Read and validate a run file; every error names the file and the key. ``overrides``
    (``run.lr=1e-3``, see ablate.overrides) are merged in first and checked like file values."""
    data = apply_overrides(read_toml(path), overrides)
    if overrides:
        check_shape(data, source=str(path))  # the command line's values, held to the same limits
    check_keys(data, ["run", "eval"], source=str(path), key=None)
    if "run" not in data:
        raise ConfigError("no [run] table", source=str(path),
                          hint="a run file needs a [run] table; see configs/coursework.toml")
    run_table, trackers = split_trackers(data["run"], source=str(path), key="run", host=host)
    errors = Collector()  # the mistakes of [run] and [eval] together
    run = errors.attempt(parse_run, run_table, source=str(path), host=host)
    evaluation = (errors.attempt(parse_eval, data["eval"], run, source=str(path), host=host)
                  if "eval" in data else None)
    errors.raise_errors()
    return RunFile(run, evaluation, trackers)
