"""Command-line utilities: `python -m tools.<name>`."""
