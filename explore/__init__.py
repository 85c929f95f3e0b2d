"""Step 0: a reproducible profiling report of a voucher history (``python -m explore``)."""
