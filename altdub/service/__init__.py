"""Use-cases: authenticate, import a run, request an export, run its task."""
