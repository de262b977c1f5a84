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

    @property
    def ports_file(self) -> Path:
        """Written by the gateway (``--ports-file``) once every listener is bound."""
        return self.root / "ports.json"

    @property
    def token_file(self) -> Path:
        """The shared token of ``start --token``, handed over as ``--token-file`` (mode 0600)."""
        return self.root / "token"

    def write_private(self, path: Path, text: str) -> None:
        """Write ``text`` to ``path`` atomically, readable by this user only (0600)."""
        self.prepare()
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.unlink(missing_ok=True)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, path)

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
        """The last start's options and listeners; 0600, since options may name secrets."""
        self.write_private(self.state_file, json.dumps(state, indent=2))


GATEWAY, OTHER, GONE = "gateway", "another program", "gone"


def pid_owner(pid: int) -> str:
    """Whether ``pid`` is a live gateway, a live process of another program, or gone (or a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return GONE
    except PermissionError:
        return GATEWAY
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return GATEWAY  # no /proc: trust kill(0)
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return GONE
    # A pid reused by another program is not our gateway.
    return GATEWAY if b"wingman-gateway" in cmdline else OTHER


def gateway_alive(pid: int) -> bool:
    """True if ``pid`` is a live (not zombie) gateway process."""
    return pid_owner(pid) == GATEWAY
