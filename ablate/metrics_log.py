"""The run's metrics log: one JSON object per line, appended as it happens."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ablate.atomic import write_text_atomic


def append(path: Path, record: dict[str, Any]) -> None:
    """Append one record and flush it to disk, so a crash loses nothing already logged."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read(path: Path) -> list[dict[str, Any]]:
    """Every complete record; a line cut short by a crash is ignored."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def keep_epochs_up_to(path: Path, epoch: int) -> None:
    """Drop records past ``epoch``: a resumed run reproduces them exactly."""
    kept = [r for r in read(path) if r.get("epoch", 0) <= epoch]
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))

