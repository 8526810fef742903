from fastapi import APIRouter

from altdub import languages
from altdub.api.schemas import LanguageOut

router = APIRouter(tags=["languages"])


def _all() -> list[LanguageOut]:
    return [LanguageOut(**lang.as_dict()) for lang in languages.all_languages()]


@router.get("/source-languages", response_model=list[LanguageOut])
def source_languages() -> list[LanguageOut]:
    """Every language a run's source may be in."""
    return _all()


@router.get("/target-languages", response_model=list[LanguageOut])
def target_languages() -> list[LanguageOut]:
    """Every language a run may be dubbed into."""
    return _all()
