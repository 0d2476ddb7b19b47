"""The sandbox's data on disk, for `bridge dev`: read at start, written after every change.

`bridge dev` keeps Redis (the queue and the ledger) in ``.bridge/redis`` across restarts. The ledger
refers to the sandbox's transactions, so the sandbox keeps its data beside it: otherwise, after a
restart, `bridge reconcile` finds every earlier award missing there. Each change rewrites the file
whole (a demo's sandbox holds little) through a temporary file and a rename, before the answer
leaves, so a `bridge dev` stopped at any moment, even by SIGKILL, leaves the last complete state.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from bridge.sandbox.state import SandboxState


class SavedStateError(RuntimeError):
    """The saved state cannot be read; the message says which file and how to start afresh."""


class StateFile:
    """One sandbox's data, saved in ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        # Exporting and renaming under one lock: two answers finishing together cannot leave the
        # older state last on disk.
        self._lock = threading.Lock()

    def load(self, state: SandboxState) -> bool:
        """Put the saved data into ``state``; False when nothing was saved yet."""
        try:
            data: dict[str, Any] = json.loads(self.path.read_text())
            state.restore(data)
        except FileNotFoundError:
            return False
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SavedStateError(f"cannot read the sandbox's saved state {self.path} ({type(exc).__name__}: "
                                  f"{exc}); `bridge dev --fresh` starts from nothing") from None
        return True

    def save(self, state: SandboxState) -> None:
        """Write ``state``'s data, replacing the file in one step."""
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_name(self.path.name + ".tmp")
            temporary.write_text(json.dumps(state.export()))
            os.replace(temporary, self.path)
