"""What observer hooks are told about a run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ablate.run_config import RunConfig


@dataclass(frozen=True)
class RunInfo:
    """A running training job: its resolved configuration and where it writes."""

    config: RunConfig
    output_dir: Path
    device: str
    parameter_count: int
