import sys
from pathlib import Path

# The synthetic-particle helpers live in tests/atoms/synthetic_atoms.py.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "atoms"))
