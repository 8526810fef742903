"""The catalogue of output formats, for clients that build their own option lists (the dashboard does)."""

from dataclasses import asdict

from fastapi import APIRouter

from altdub.api.schemas import FormatOut, FormatsOut, LoudnessTargetOut
from altdub.media.catalogue import CATALOGUE, LOUDNESS_TARGETS

router = APIRouter(tags=["formats"])


@router.get("/formats", response_model=FormatsOut)
def formats() -> FormatsOut:
    """Every output format with the options that apply to it and their allowed values (media/catalogue.py).

    An option absent from a format's ``options`` does not apply to it; a value absent from its ``values``
    is refused with a 422 naming the option.
    """
    return FormatsOut(
        formats=[FormatOut.of(f) for f in CATALOGUE.values()],
        loudness_targets=[LoudnessTargetOut(**asdict(t)) for t in LOUDNESS_TARGETS.values()],
    )
