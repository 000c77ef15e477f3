"""Benchmarks and drills (issue 6). Each module is a documented command: `python -m bench.<name> --help`."""
