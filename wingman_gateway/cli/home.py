"""Where the ``wingman`` command keeps its files: ``$WINGMAN_HOME`` or ``~/.wingman``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import attrs


@attrs.frozen
class Home:
    """The pid file, log, key ring and last-start record of a local gateway."""

    root: Path

    @classmethod
    def from_environment(cls) -> "Home":
        return cls(Path(os.environ.get("WINGMAN_HOME") or Path.home() / ".wingman"))

    @property
    def pidfile(self) -> Path:
        return self.root / "gateway.pid"

    @property
    def logfile(self) -> Path:
        return self.root / "logs" / "wingman.log"

    @property
    def keyring(self) -> Path:
        return self.root / "keys.json"

    @property
    def state_file(self) -> Path:
        return self.root / "gateway.json"

    def prepare(self) -> None:
        """Create the folders, private to the user."""
        for folder in (self.root, self.logfile.parent):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)

    def read_pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def load_state(self) -> dict[str, Any]:
        try:
            data = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def save_state(self, state: dict[str, Any]) -> None:
        self.prepare()
        temporary = self.state_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(state, indent=2))
        os.replace(temporary, self.state_file)


def gateway_alive(pid: int) -> bool:
    """True if ``pid`` is a live (not zombie) gateway process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: trust kill(0)
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False
    # A pid reused by another program is not our gateway.
    return b"wingman-gateway" in cmdline
