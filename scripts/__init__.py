"""Developer tools run with ``python -m scripts.<name>``."""
