import sys
from pathlib import Path

# The shared synthetic-particle helpers live beside this file (tests/atoms/synthetic_atoms.py).
sys.path.insert(0, str(Path(__file__).resolve().parent))
