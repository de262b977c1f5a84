"""What the ``gateway`` marker may hold besides plain option strings."""

from __future__ import annotations

import attrs


@attrs.frozen
class FromFixture:
    """An option whose text is another fixture's value (a file the test made, say):
    ``@pytest.mark.gateway("--keyring", FromFixture("ring_path"))``."""

    name: str
