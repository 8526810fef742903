"""altdub: deliver the dubbed output of a run in the format asked for."""

__version__ = "0.1.0"
