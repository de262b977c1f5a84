"""The README's quick start, as a newcomer runs it: a fresh clone of the
committed checkout, ``make run`` (a new .venv, the gateway installed from the
machine's package index), /health answering, then the gateway stopped by its pid.

It takes about as long as ``pip install`` of the gateway's dependencies
(10 s to a minute, by what pip has cached)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from harness.background import Background
from harness.support import free_tcp_port, get_url, wait_ports_file

CHECKOUT = Path(__file__).resolve().parent.parent
INSTALL_TIMEOUT = 600.0  # creating the venv and installing from the package index


def test_a_fresh_clone_runs_with_make_run(tmp_path: Path) -> None:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=CHECKOUT, capture_output=True, text=True,
                          check=True, timeout=30).stdout.strip()
    clone = tmp_path / "wingman-gateway"
    subprocess.run(["git", "clone", "--quiet", "--no-checkout", str(CHECKOUT), str(clone)], check=True, timeout=120)
    subprocess.run(["git", "checkout", "--quiet", head], cwd=clone, check=True, timeout=60)
    port = free_tcp_port()
    ports_file = tmp_path / "ports.json"
    # The checkout's own venv must not leak into the clone's `make run`.
    env = {name: value for name, value in os.environ.items() if name not in ("VIRTUAL_ENV", "PYTHONPATH")}
    make = Background(["make", "run", f"PORT={port}", f"ARGS=--host 127.0.0.1 --ports-file {ports_file}"],
                      cwd=str(clone), env=env, exact_env=True)
    try:
        bound = wait_ports_file(make, str(ports_file), timeout=INSTALL_TIMEOUT)
        assert [entry["port"] for entry in bound["listeners"]] == [port], bound
        assert (clone / ".venv" / "bin" / "twistd").exists()
        status, body = get_url(f"http://127.0.0.1:{port}/health")
        assert status == 200 and body["status"] == "healthy", body
        gateway_pid = int(bound["pid"])
        assert gateway_pid != make.pid  # make runs twistd as its child
        os.kill(gateway_pid, signal.SIGTERM)
        make.wait_exit(30)  # twistd ends by the signal it got, so make reports it "Terminated"
        assert "Received SIGTERM, shutting down." in make.output and "Server Shut Down." in make.output
    finally:
        make.stop()
