"""Test helpers (support.py, memory.py) are imported as plain modules."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
