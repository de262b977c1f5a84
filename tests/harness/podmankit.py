"""Podman for the container tests: a private store, a local base image, the gateway image.

Everything lives under one temporary directory (storage root, run root,
containers.conf), so the tests touch no other image or container on the
machine and remove what they made. No image registry is reachable: the base
image is a Debian bookworm made with ``debootstrap`` from the mirror this
machine's apt uses, with ``python3`` and ``python3-venv``, imported with
``podman import``. Python packages inside the build come from wherever this
machine's pip gets them: its settings (``pip config list``, which includes
``PIP_*`` variables) become the build's ``/etc/pip.conf``, and the local
files they name (CA bundle, indexes, wheel directories) are mounted read-only
for the build only.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
SUITE = "bookworm"
BASE_IMAGE = "localhost/wingman-test-base:bookworm"
# Seconds a podman command may take; the image build and debootstrap get more.
COMMAND_TIMEOUT = 120
BUILD_TIMEOUT = 900


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: install Debian's {name} package (make deps)"
    return path


# --- the machine's apt mirror and pip settings ---------------------------------


def _deb822(text: str) -> Iterator[dict[str, str]]:
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if fields:
            yield fields


def apt_sources(root: Path = Path("/etc/apt")) -> list[tuple[str, str]]:
    """(URI, suite) of every enabled ``deb`` source, one-line and deb822 alike."""
    found: list[tuple[str, str]] = []
    one_line = [root / "sources.list", *sorted((root / "sources.list.d").glob("*.list"))]
    for path in one_line:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
            if len(words) >= 3 and words[0] == "deb":
                found.append((words[1], words[2]))
    for path in sorted((root / "sources.list.d").glob("*.sources")):
        for stanza in _deb822(path.read_text()):
            if "deb" not in stanza.get("types", "").split() or stanza.get("enabled", "yes") == "no":
                continue
            for uri in stanza.get("uris", "").split():
                found.extend((uri, suite) for suite in stanza.get("suites", "").split())
    return found


def debian_mirror() -> str:
    """The mirror of the main archive (a suite without ``-security``/``-updates``)."""
    for uri, suite in apt_sources():
        if urlsplit(uri).scheme in ("http", "https") and "-" not in suite and "/" not in suite:
            return uri
    raise AssertionError("no http(s) Debian mirror in this machine's apt sources")


def pip_settings() -> tuple[str, list[Path]]:
    """This machine's pip settings as a pip.conf, and the local paths they name."""
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
        check=True, timeout=COMMAND_TIMEOUT,
    ).stdout
    sections: dict[str, dict[str, str]] = {}
    environment: dict[str, str] = {}
    for line in listed.splitlines():
        match = re.fullmatch(r"(.+?)\.([\w-]+)='(.*)'", line)
        if not match:
            continue
        section, key, value = match.groups()
        if section == ":env:":
            environment[key] = value
        else:
            sections.setdefault(section, {})[key] = value
    sections.setdefault("global", {}).update(environment)  # PIP_* variables win
    paths: list[Path] = []
    for values in sections.values():
        for value in values.values():
            for word in value.split():
                if word.startswith("file://"):
                    # An index directory: its files lie beside it (../files/...).
                    paths.append(Path(urlsplit(word).path).parent)
                elif word.startswith("/") and os.path.exists(word):
                    paths.append(Path(word))
    text = "".join(
        f"[{section}]\n" + "".join(f"{key} = {value}\n" for key, value in values.items())
        for section, values in sections.items()
    )
    return text, sorted(set(paths))


# --- podman ------------------------------------------------------------------------


class Podman:
    """``podman --runtime runc --cgroup-manager cgroupfs`` on a store of its own."""

    def __init__(self, directory: Path, driver: str = "overlay") -> None:
        self.directory = directory
        self.conf = directory / "containers.conf"
        # The default ulimits cannot be applied on these machines.
        self.conf.write_text("[containers]\ndefault_ulimits = []\n")
        self.base = [
            tool("podman"), "--runtime", tool("runc"), "--cgroup-manager", "cgroupfs",
            "--root", str(directory / "storage"), "--runroot", str(directory / "run"),
            "--storage-driver", driver,
        ]
        self.images: list[str] = []
        self.containers: list[str] = []

    def run(self, *args: str, check: bool = True, timeout: float = COMMAND_TIMEOUT,
            stdin: Any = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "CONTAINERS_CONF": str(self.conf)}
        result = subprocess.run(
            [*self.base, *args], capture_output=True, text=True, env=env, timeout=timeout,
            stdin=stdin,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
        return result

    def import_rootfs(self, rootfs: Path, name: str) -> str:
        """A base image from a root file system tree; its image id."""
        tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."],
                               stdout=subprocess.PIPE)
        try:
            image = self.run("import", "-", name, stdin=tar.stdout, timeout=BUILD_TIMEOUT).stdout
        finally:
            assert tar.stdout is not None
            tar.stdout.close()
            tar.wait(COMMAND_TIMEOUT)
        image_id = image.strip().splitlines()[-1].removeprefix("sha256:")
        self.images.append(image_id)
        return image_id

    def build(self, context: Path, name: str, *options: str) -> str:
        """Build a Dockerfile (docker format: OCI images lose HEALTHCHECK); the image id."""
        iidfile = self.directory / f"{name.replace('/', '_').replace(':', '_')}.iid"
        self.run("build", "--format", "docker", "--network", "host", "--pull=never",
                 "--iidfile", str(iidfile), "--tag", name, *options, str(context),
                 timeout=BUILD_TIMEOUT)
        image_id = iidfile.read_text().strip().removeprefix("sha256:")
        self.images.append(image_id)
        return image_id

    def start(self, image: str, *options: str, args: tuple[str, ...] = ()) -> str:
        """A detached container the tests own (removed at the end); its id."""
        name = f"wingman-test-{secrets.token_hex(4)}"
        self.containers.append(name)
        return self.run("run", "--detach", "--name", name, *options, image, *args).stdout.strip()

    def inspect(self, what: str) -> dict[str, Any]:
        return json.loads(self.run("inspect", what).stdout)[0]  # type: ignore[no-any-return]

    def logs(self, container: str) -> str:
        result = self.run("logs", container, check=False)
        return result.stdout + result.stderr

    def wait_exited(self, container: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            state = self.inspect(container)["State"]
            if state["Status"] in ("exited", "stopped"):
                return state  # type: ignore[no-any-return]
            if time.monotonic() >= deadline:
                raise AssertionError(f"container {container} still {state['Status']}")
            time.sleep(0.2)

    def cleanup(self) -> None:
        """Remove the containers and images made here (by name and id), then the store."""
        for container in reversed(self.containers):
            self.run("rm", "--force", "--volumes", container, check=False)
        volumes = self.run("volume", "ls", "--quiet", check=False).stdout.split()
        if volumes:
            self.run("volume", "rm", "--force", *volumes, check=False)
        for image in reversed(self.images):
            self.run("rmi", "--force", image, check=False)
        self.run("image", "prune", "--force", check=False)
        shutil.rmtree(self.directory, ignore_errors=True)


def debootstrap(target: Path) -> None:
    """A minimal Debian bookworm with python3 and python3-venv, from this machine's mirror."""
    result = subprocess.run(
        [tool("debootstrap"), "--variant=minbase", "--include=python3,python3-venv",
         SUITE, str(target), debian_mirror()],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT,
    )
    assert result.returncode == 0, f"debootstrap failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"


def build_gateway_image(podman: Podman, base: str, name: str) -> str:
    """The repository's Dockerfile on ``base``, with this machine's pip settings."""
    conf_text, paths = pip_settings()
    conf = podman.directory / "pip.conf"
    conf.write_text(conf_text)
    mounts = ["--volume", f"{conf}:/etc/pip.conf:ro"]
    for path in paths:
        mounts += ["--volume", f"{path}:{path}:ro"]
    return podman.build(REPOSITORY, name, "--build-arg", f"BASE={base}", *mounts)


# --- session fixtures (made once per test run; conftest.py provides them) ---------


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    """A private podman store for the run; emptied and removed at its end."""
    instance = Podman(tmp_path_factory.mktemp("podman"))
    try:
        yield instance
    finally:
        instance.cleanup()


@pytest.fixture(scope="session")
def gateway_image(podman: Podman) -> str:
    """The gateway image, built once per run on a debootstrapped bookworm base."""
    rootfs = podman.directory / "rootfs"
    debootstrap(rootfs)
    try:
        podman.import_rootfs(rootfs, BASE_IMAGE)
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    return build_gateway_image(podman, BASE_IMAGE, "localhost/wingman-gateway-test:latest")
