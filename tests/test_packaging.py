"""Packaging: the wheel carries the twistd plugin, installs into a fresh venv
and runs from there; ``--help`` documents every setting with its default."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import urllib.request
import zipfile
from pathlib import Path

import pytest

from harness.support import TWISTD, GatewayProcess, Node, get_url
from wingman_gateway import __version__
from wingman_gateway.config import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
# Build artefacts and local state that must not reach (or be written into) the build.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", ".pytest_cache", "__pycache__", "dropin.cache"
)


class InstalledGateway(GatewayProcess):
    """A gateway run by another environment's twistd, with exactly the given env and cwd."""

    def __init__(self, twistd: Path, args: list[str], env: dict[str, str], cwd: Path) -> None:
        super().__init__(
            args, env=env, cwd=str(cwd), exact_env=True,
            command=[str(twistd), "--nodaemon", "--pidfile=", "wingman-gateway", *args],
        )


def run(command: list[str | Path], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    """Run ``command`` to completion; fail with its output unless it succeeds."""
    result = subprocess.run(
        [str(part) for part in command], cwd=cwd, env=env, timeout=timeout,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert result.returncode == 0, f"{command} failed ({result.returncode}):\n{result.stdout}"
    return result.stdout


def outside_env() -> dict[str, str]:
    """The environment minus anything that would put the checkout or main venv on sys.path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the checkout (so no build/ lands in the tree)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-w", work / "dist", source], cwd=work)
    [built] = (work / "dist").glob("wingman_gateway-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv (no system site-packages) with only the wheel and its dependencies."""
    venv = tmp_path_factory.mktemp("venv") / "env"
    run([sys.executable, "-m", "venv", venv], cwd=venv.parent, env=outside_env())
    run([venv / "bin" / "python", "-m", "pip", "install", wheel], cwd=venv.parent, env=outside_env())
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
    return venv


def test_wheel_carries_the_plugin_but_no_twisted_package_files(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert [n for n in names if n.startswith("twisted/")] == ["twisted/plugins/wingman_gateway_plugin.py"]
    assert "twisted/__init__.py" not in names and "twisted/plugins/__init__.py" not in names
    # Every module of the package, subpackages included, is in the wheel.
    modules = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "wingman_gateway").rglob("*.py"))
    package_data = ["wingman_gateway/web/static/wingman.js"]  # the JavaScript client
    package_data += sorted(  # the web console's files
        p.relative_to(ROOT).as_posix() for p in (ROOT / "wingman_gateway" / "web" / "console").iterdir() if p.is_file()
    )
    assert sorted(n for n in names if n.startswith("wingman_gateway/")) == sorted(modules + package_data)
    assert not [n for n in names if n.startswith("tests/")]


def test_installed_wheel_runs_outside_the_checkout(installed: Path, tmp_path: Path) -> None:
    """The fresh venv imports the gateway from its own site-packages and serves /health."""
    env = outside_env()
    python = installed / "bin" / "python"
    where = run([python, "-c", "import wingman_gateway, twisted.plugins.wingman_gateway_plugin as p;"
                 "print(wingman_gateway.__file__); print(p.__file__)"], cwd=tmp_path, env=env)
    site = str(installed / "lib")
    assert all(line.startswith(site) for line in where.split()), where
    assert str(ROOT) not in where

    usage = run([installed / "bin" / "twistd", "wingman-gateway", "--help"], cwd=tmp_path, env=env)
    assert usage.startswith("Usage: twistd [options] wingman-gateway [options]")
    for flag in ["listen", "config", "auth", *(s.flag for s in SETTINGS)]:
        assert re.search(rf"^\s+(-\w, )?--{flag}\b", usage, re.MULTILINE), flag

    gateway = InstalledGateway(
        installed / "bin" / "twistd", ["--listen", "tcp:0:interface=127.0.0.1", "--name", "from-wheel"],
        env=env, cwd=tmp_path,
    )
    try:
        port = gateway.port
        status, body = get_url(f"http://127.0.0.1:{port}/health")
        assert status == 200, body
        assert body["status"] == "healthy" and body["service"] == "wingman-gateway"
        assert (body["name"], body["version"]) == ("from-wheel", __version__)
        # The console's files come from the installed package.
        console = ROOT / "wingman_gateway" / "web" / "console"
        for name in ("", "app.js", "console.css"):
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only
            with opener.open(f"http://127.0.0.1:{port}/console/{name}", timeout=5) as answer:
                assert answer.read() == (console / (name or "index.html")).read_bytes()
        node = Node(gateway.url)
        try:
            ack = node.register("packaged")
            assert ack["type"] == "ack" and ack["payload"]["gateway"] == "from-wheel", ack
        finally:
            node.close()
        assert gateway.proc.poll() is None
        assert str(installed / "bin" / "python") in gateway.log  # twistd names its interpreter
    finally:
        gateway.stop()


def help_entries(text: str) -> dict[str, str]:
    """``--flag`` -> its help text (wrapped lines joined) from twistd's usage output."""
    entries: dict[str, str] = {}
    flag = None
    for line in text.splitlines():
        match = re.match(r"^\s+(?:-\w, )?--([\w-]+)=?\s*(.*)$", line)
        if match:
            flag = match.group(1)
            entries[flag] = match.group(2).strip()
        elif flag is not None and line.startswith(" " * 20) and line.strip():
            entries[flag] += " " + line.strip()
        else:
            flag = None
    return entries


def test_help_lists_every_setting_with_its_default(tmp_path: Path) -> None:
    usage = run([TWISTD, "-n", "wingman-gateway", "--help"], cwd=tmp_path)
    entries = help_entries(usage)
    for setting in SETTINGS:
        assert setting.flag in entries, (setting.flag, usage)
        text = entries[setting.flag]
        assert text.startswith(setting.help), (setting.flag, text)
        if setting.default is not None:
            assert text.endswith(f"[default: {setting.default}]"), (setting.flag, text)
    assert entries["listen"].endswith(r"[default: tcp6:3000:interface=\:\:]")
    assert "config" in entries and "auth" in entries


def test_wheel_and_sdist_carry_the_license(wheel: Path, tmp_path: Path) -> None:
    """The MIT licence setup.cfg announces ships in both; the sdist also has the protocol reference."""
    license_text = (ROOT / "LICENSE").read_text()
    assert license_text.startswith("MIT License\n\nCopyright (c) 2026 Wingman Gateway developers\n")
    with zipfile.ZipFile(wheel) as archive:
        [found] = [n for n in archive.namelist() if n.endswith("/LICENSE") and ".dist-info/" in n]
        assert archive.read(found).decode() == license_text
        [metadata] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        assert "License-File: LICENSE" in archive.read(metadata).decode().splitlines()
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    run([sys.executable, "-c", "import setuptools.build_meta as b; b.build_sdist('dist')"], cwd=source)
    [sdist] = (source / "dist").glob("wingman_gateway-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
        top = archive.getnames()[0].split("/")[0]
        member = archive.extractfile(f"{top}/LICENSE")
        assert member is not None and member.read().decode() == license_text
    assert {"LICENSE", "docs/protocol.rst", "README.rst"} <= names
