"""Makes the helper modules of this folder (helpers.py, tolerances.py) importable by the tests."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
