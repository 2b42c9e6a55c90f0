"""Test setup: make ``scripts/`` importable so tests use ``segcore`` exactly as the rule scripts do."""

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "scripts"))
