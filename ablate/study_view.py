"""Where a study lives and what it optimises, read without loading a plugin.

``ablate show`` only reads a study that ran: its name, folder and storage come from the
``[study]`` table, its objectives from the definition the study stored when it started. Going
through ``load_study_file`` instead would validate the ``[run]`` and ``[search]`` tables against
every plugin, which imports torch and takes seconds; a study file's mistakes are the business
of ``ablate run``. ``study_config`` takes the study name and default storage rules from here,
so both find the same study.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from ablate.components import shown
from ablate.errors import AblateError, ConfigError
from ablate.storage import file_path, masked, open_storage

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MAX_NAME_LENGTH = 100
DEFAULT_OUTPUT = "studies-out"


class StudyNotFound(AblateError):
    """The study file names a study its storage does not hold (it never ran)."""

    exit_code = 2


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: str


class StudyLayout:
    """What a study's folder and objectives give: the same for a ``StudyView`` and a
    ``StudySpec``, which both hold ``folder`` and ``objectives``."""

    folder: Path
    objectives: tuple[Objective, ...]

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def trials_dir(self) -> Path:
        return self.folder / "trials"

    @property
    def artifacts_dir(self) -> Path:
        return self.folder / "artifacts"


@dataclass(frozen=True)
class StudyView(StudyLayout):
    """What the study table needs of a study (a ``StudySpec`` offers the same)."""

    path: Path
    name: str
    storage: str
    folder: Path
    objectives: tuple[Objective, ...]


def check_name(value: Any, *, source: str) -> str:
    """A study name: it names a folder, so nothing that could leave one."""
    if not isinstance(value, str) or not NAME_PATTERN.match(value) or \
            len(value) > MAX_NAME_LENGTH:
        raise ConfigError(f"{shown(value)} is not a usable study name", source=source,
                          key="study.name",
                          hint=f"letters, digits, '_', '.' and '-', at most {MAX_NAME_LENGTH} "
                               f"(it names a folder)")
    return value


def default_storage(folder: Path, workers: int) -> str:
    """SQLite for one process; a journal file (which takes concurrent writers) for several, or
    when the study already lives in one."""
    journal = f"journal:///{folder / 'journal.log'}"
    if workers > 1 or ((folder / "journal.log").exists() and not (folder / "study.db").exists()):
        return journal
    return f"sqlite:///{folder / 'study.db'}"


def open_existing(name: str, storage_url: str,
                  path: Path) -> tuple[optuna.Study, optuna.storages.BaseStorage]:
    """The study ``name`` in its storage; an error saying how to start it if it never ran
    (``ablate.study.load_existing`` does the same for a validated study file)."""
    stored = file_path(storage_url)
    if stored is not None and not stored.exists():
        raise StudyNotFound(f"study {name!r} has not run yet (no {stored}); start it with: "
                         f"ablate run {path}")
    storage = open_storage(storage_url)
    try:
        return optuna.load_study(study_name=name, storage=storage), storage
    except KeyError:
        raise StudyNotFound(f"{masked(storage_url)} holds no study named {name!r}; start it with: "
                         f"ablate run {path}") from None


def open_view(path: Path, storage: str | None = None
              ) -> tuple[StudyView, optuna.Study, optuna.storages.BaseStorage]:
    """A study that ran, from its study file (``storage`` overrides ``[study] storage``)."""
    source = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("file not found", source=source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the file ({exc})", source=source) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", source=source,
                          hint="see https://toml.io for the syntax") from None
    table = data.get("study")
    if not isinstance(table, Mapping):
        raise ConfigError("no [study] table", source=source,
                          hint="a study file needs [study] and [run]; see "
                               "studies/beta_range.toml")
    name = check_name(table.get("name", path.stem), source=source)
    output = table.get("output", DEFAULT_OUTPUT)
    if not isinstance(output, str):
        raise ConfigError(f"{shown(output)} is not a folder name", source=source,
                          key="study.output")
    folder = Path(output) / name
    url = storage or table.get("storage") or default_storage(folder, 1)
    if not isinstance(url, str):
        raise ConfigError(f"{shown(url)} is not a storage URL", source=source,
                          key="study.storage")
    study, opened = open_existing(name, url, path)
    stored = study.user_attrs.get("definition", {}).get("objectives") or []
    objectives = tuple(Objective(o["metric"], o["direction"]) for o in stored) or tuple(
        Objective(f"value {i}", d.name.lower()) for i, d in enumerate(study.directions))
    return StudyView(path, name, url, folder, objectives), study, opened
