"""Where per-user state lives: one folder, `$RAGLINE_HOME` (default `~/.ragline`)."""

from __future__ import annotations

import os
from pathlib import Path


def ragline_home() -> Path:
    """The per-user state folder (ledger, LLM cache, embedding cache, model cache, run registry)."""
    home = os.environ.get("RAGLINE_HOME")
    path = Path(home).expanduser() if home else Path.home() / ".ragline"
    path.mkdir(parents=True, exist_ok=True)
    return path
