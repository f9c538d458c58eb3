"""Run files: a ``[run]`` table and an optional ``[eval]`` table, validated together."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ablate.config import RunConfig, check_keys, parse_run, read_toml
from ablate.errors import ConfigError
from ablate.eval_config import EvalConfig, parse_eval
from ablate.plugin_host import PluginHost


@dataclass(frozen=True)
class RunFile:
    run: RunConfig
    evaluation: EvalConfig | None


def load_run_file(path: Path, host: PluginHost | None = None) -> RunFile:
    """Read and validate a run file; every error names the file and the key."""
    data = read_toml(path)
    check_keys(data, ["run", "eval"], source=str(path), key=None)
    if "run" not in data:
        raise ConfigError("no [run] table", source=str(path),
                          hint="a run file needs a [run] table; see configs/coursework.toml")
    run = parse_run(data["run"], source=str(path), host=host)
    evaluation = (parse_eval(data["eval"], run, source=str(path), host=host)
                  if "eval" in data else None)
    return RunFile(run, evaluation)
