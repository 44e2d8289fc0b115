"""The progress bars live in common/progress.py (every layer shows them); this name stays for callers."""
from harness.common.progress import RateColumn, console, make_progress, progress_bar, quiet_hf_progress  # noqa: F401
