"""The examples of ``docs/protocol.rst``, read so that tests can replay them.

The page is split into sections by ``.. replay: OPTIONS`` comments. In a
section, a paragraph ``ACTOR sends:``, ``ACTOR gets:`` or ``ACTOR
receives:`` labels the ``.. code-block:: json`` after it; ``.. code-block::
console`` blocks hold ``$ curl ...`` commands, each followed by its output.
Ids, secrets and timestamps differ between runs: ``Bindings`` learns which
real value each documented one stands for and rewrites later requests.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import attrs

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.rst"

# Fields whose values the gateway makes up: documented ones stand for real ones.
IDS = frozenset({"nodeId", "fromNodeId", "targetNodeId", "groupId", "createdBy", "session", "epoch"})
# Numbers that differ from run to run (any integer matches).
TIMES = frozenset({"timestamp", "retryAfterMs"})

_LABEL = re.compile(r"^(\w+) (sends|gets|receives):$")
_REPLAY = re.compile(r"^\.\. replay:(.*)$")
_BLOCK = re.compile(r"^\.\. code-block:: (\w+)$")


@attrs.frozen
class Step:
    actor: str
    verb: str  # sends, gets or receives
    envelope: Any


@attrs.frozen
class Command:
    text: str  # the shell command, continuation lines included
    output: list[str]


@attrs.define
class Section:
    options: list[str]
    steps: list[Step] = attrs.Factory(list)
    commands: list[Command] = attrs.Factory(list)


@attrs.define
class Page:
    sections: list[Section]
    unlabelled: list[Any]  # JSON examples that no actor sends or gets
    screens: list[list[str]]  # ``.. code-block:: text``: what a terminal shows
    text: str


def _block(lines: list[str], start: int) -> tuple[list[str], int]:
    """The indented body of the directive at ``start`` (dedented), and the next line index."""
    body: list[str] = []
    index = start + 1
    while index < len(lines) and (not lines[index].strip() or lines[index].startswith("   ")):
        body.append(lines[index][3:])
        index += 1
    while body and not body[-1].strip():
        body.pop()
    while body and not body[0].strip():
        body.pop(0)
    return body, index


def _commands(body: list[str]) -> list[Command]:
    commands: list[Command] = []
    index = 0
    while index < len(body):
        line = body[index]
        assert line.startswith("$ "), f"console block line outside a command: {line!r}"
        text = line[2:]
        while text.endswith("\\"):
            index += 1
            text += "\n" + body[index]
        index += 1
        output: list[str] = []
        while index < len(body) and not body[index].startswith("$ "):
            output.append(body[index])
            index += 1
        while output and not output[-1].strip():
            output.pop()
        commands.append(Command(text, output))
    return commands


def read_page(path: Path = DOC) -> Page:
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    sections: list[Section] = []
    unlabelled: list[Any] = []
    screens: list[list[str]] = []
    label: tuple[str, str] | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        if match := _REPLAY.match(line):
            sections.append(Section(match.group(1).split()))
        elif match := _LABEL.match(line):
            label = (match.group(1), match.group(2))
        elif match := _BLOCK.match(line):
            body, index = _block(lines, index)
            if match.group(1) == "json":
                value = json.loads("\n".join(body))
                if label is None:
                    unlabelled.append(value)
                else:
                    sections[-1].steps.append(Step(label[0], label[1], value))
            elif match.group(1) == "console":
                sections[-1].commands.extend(_commands(body))
            elif match.group(1) == "text":
                screens.append(body)
            label = None
            continue
        elif line.strip():
            label = None
        index += 1
    return Page(sections, unlabelled, screens, text)


class Bindings:
    """Which real value each documented id or secret stands for."""

    def __init__(self) -> None:
        self.real: dict[str, str] = {}

    def bind(self, documented: Any, real: Any, where: str) -> None:
        assert isinstance(documented, str) and isinstance(real, str), (where, documented, real)
        known = self.real.get(documented)
        if known is None:
            assert real not in self.real.values(), f"{where}: {real} already stands for another id"
            self.real[documented] = real
        else:
            assert known == real, f"{where}: documented {documented} was {known}, now {real}"

    def text(self, documented: str) -> str:
        """``documented`` with every documented id in it replaced by its real one."""
        for doc_value, real in self.real.items():
            documented = documented.replace(doc_value, real)
        return documented

    def request(self, value: Any) -> Any:
        """A documented request with the real ids in it."""
        if isinstance(value, dict):
            return {key: self.request(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.request(item) for item in value]
        if isinstance(value, str):
            return self.real.get(value, value)
        return value

    def match(self, documented: Any, real: Any, where: str = "$") -> None:
        """Assert ``real`` is what the page documents (ids bound, times any integer)."""
        if isinstance(documented, dict):
            assert isinstance(real, dict), f"{where}: expected an object, got {real!r}"
            assert documented.keys() == real.keys(), (
                f"{where}: fields differ: documented {sorted(documented)}, real {sorted(real)}"
            )
            for key, value in documented.items():
                if key in IDS and isinstance(value, str):
                    self.bind(value, real[key], f"{where}.{key}")
                elif key in TIMES:
                    assert type(real[key]) is int, f"{where}.{key}: {real[key]!r} is not an integer"
                else:
                    self.match(value, real[key], f"{where}.{key}")
        elif isinstance(documented, list):
            assert isinstance(real, list) and len(real) == len(documented), f"{where}: {real!r}"
            for number, (value, item) in enumerate(zip(documented, real)):
                self.match(value, item, f"{where}[{number}]")
        elif isinstance(documented, str):
            assert real == self.text(documented), f"{where}: documented {documented!r}, real {real!r}"
        else:
            assert type(real) is type(documented) and real == documented, (
                f"{where}: documented {documented!r}, real {real!r}"
            )
