"""Shared test setup: point the harness at the offline benchmark mirror and NLTK data beside the checkout."""
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

os.environ.setdefault("HARNESS_DATA_DIR", str(SHARED / "data"))
os.environ.setdefault("NLTK_DATA", str(SHARED / "data" / "nltk_data"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HARNESS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
