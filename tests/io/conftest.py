import sys
from pathlib import Path

# The shared raw-file and sample-sheet helpers live beside this file (tests/io/io_helpers.py).
sys.path.insert(0, str(Path(__file__).resolve().parent))
