"""Network namespaces that a test creates and removes, for real multicast.

Each namespace has only its loopback interface, up, with multicast on and a
``224.0.0.0/4`` route: mDNS packets never leave it and the machine's real
interfaces are never touched. Every process started in it is stopped by pid
and the namespace deleted, however the test ends.
"""

from __future__ import annotations

import secrets
import subprocess
import textwrap
from pathlib import Path
from typing import Any

from harness.background import Background, stop_all
from harness.cli_support import WINGMAN
from harness.support import wait_ports_file


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10)


class Netns:
    """A namespace ``wgtest-<random>``; use as a context manager."""

    def __init__(self, multicast: bool = True) -> None:
        self.name = f"wgtest-{secrets.token_hex(4)}"
        self.multicast = multicast
        self.processes: list[Background] = []

    def __enter__(self) -> "Netns":
        _ip("netns", "add", self.name)
        try:
            self.exec_ip("link", "set", "lo", "up")
            if self.multicast:
                self.exec_ip("link", "set", "lo", "multicast", "on")
                self.exec_ip("route", "add", "224.0.0.0/4", "dev", "lo")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        try:
            stop_all(self.processes)
        finally:
            subprocess.run(["ip", "netns", "delete", self.name], capture_output=True, timeout=10)

    def exec_ip(self, *args: str) -> None:
        _ip("netns", "exec", self.name, "ip", *args)

    def command(self, *command: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *command]

    def spawn(self, *command: str, env: dict[str, str] | None = None, stdin: bool = False) -> Background:
        """A process inside the namespace, stopped (by pid) when the namespace closes."""
        process = Background(self.command(*command), env=env, stdin=stdin)
        self.processes.append(process)
        return process

    def run(self, *command: str, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        import os

        return subprocess.run(self.command(*command), env={**os.environ, **(env or {})},
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def start_avahi(netns: Netns, directory: Path) -> dict[str, str]:
    """A private D-Bus and an avahi-daemon in ``netns``; the environment avahi-browse needs.

    The daemon publishes nothing of its own, listens on ``lo`` only and keeps
    its pid file on a tmpfs of a private mount namespace, so it never meets
    the machine's own avahi.
    """
    bus = directory / "bus"
    config = directory / "bus.conf"
    config.write_text(textwrap.dedent(f"""\
        <!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
         "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
        <busconfig>
          <type>custom</type>
          <listen>unix:path={bus}</listen>
          <auth>EXTERNAL</auth>
          <policy context="default">
            <allow user="root"/>
            <allow own="*"/>
            <allow send_destination="*"/>
            <allow receive_sender="*"/>
          </policy>
        </busconfig>
        """))
    dbus = netns.spawn("dbus-daemon", f"--config-file={config}", "--nofork", "--print-address")
    dbus.wait_for(r"^unix:path=")
    avahi_conf = directory / "avahi-daemon.conf"
    avahi_conf.write_text(textwrap.dedent("""\
        [server]
        host-name=wgtest-avahi
        use-ipv4=yes
        use-ipv6=no
        allow-interfaces=lo
        enable-dbus=yes
        ratelimit-interval-usec=1000000
        ratelimit-burst=1000
        [wide-area]
        enable-wide-area=no
        [publish]
        disable-publishing=yes
        publish-addresses=no
        """))
    env = {"DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={bus}"}
    script = ("mount -t tmpfs -o size=1m tmpfs /run && exec avahi-daemon --no-drop-root --no-chroot "
              f"--no-rlimits -f {avahi_conf}")
    avahi = netns.spawn("unshare", "--mount", "--propagation", "private", "sh", "-c", script, env=env)
    avahi.wait_for(r"Server startup complete")
    return env


def spawn_run(netns: Netns, home: Path, *args: str) -> tuple[Background, dict[str, Any]]:
    """``wingman gateway run ARGS`` in the namespace (``args`` may end with ``--``
    and options of the gateway itself); (process, its ports file) once it listens."""
    home.mkdir(parents=True, exist_ok=True)
    ports_file = home / "run-ports.json"
    gateway_options = ["--ports-file", str(ports_file)] if "--" in args else ["--", "--ports-file", str(ports_file)]
    gateway = netns.spawn(WINGMAN, "gateway", "run", *args, *gateway_options, env={"WINGMAN_HOME": str(home)})
    return gateway, wait_ports_file(gateway, str(ports_file))


def run_gateway(netns: Netns, home: Path, name: str, *extra: str) -> tuple[Background, int]:
    """``wingman gateway run --discovery mdns`` in the namespace; (process, port) once announced."""
    gateway, bound = spawn_run(netns, home, "--listen", "tcp:0:interface=127.0.0.1", "--name", name,
                               "--discovery", "mdns", "--mdns-interface", "lo", *extra)
    port = int(bound["listeners"][0]["port"])
    gateway.wait_for(r"mdns: announced '.*' \(_wingman-gateway\._tcp\.local\.\) on port " + str(port))
    return gateway, port


def discover(netns: Netns, *args: str) -> Any:
    return netns.run(WINGMAN, "gateway", "discover", *args)
