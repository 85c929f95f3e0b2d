"""Where the checkout is, and the real history file beside it (never copied into it)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
#: The real history file, beside the repository; the tests that need it skip without it.
REAL_FILE = REPO_ROOT.parent / "shared" / "data" / "voucher_history.parquet.gzip"
