"""The 148 language ids of the Camb.ai API, with names and ISO 639-2 codes from ``langcodes``."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources

import langcodes


@dataclass(frozen=True)
class Language:
    id: int
    short_name: str
    name: str
    iso639_2: str  # bibliographic form, as Matroska, MP4 and ID3 expect
    tag: str  # BCP-47 (``es-ES``, ``zh-CN-henan``), as HLS and DASH manifests name languages

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "language": self.name, "short_name": self.short_name}


def _describe(short_name: str) -> tuple[str, str, str]:
    tag = langcodes.Language.get(short_name)
    name = tag.display_name()
    if tag.variants:  # e.g. zh-cn-henan: langcodes names the region only
        extra = ", ".join(v.title() for v in tag.variants)
        name = f"{name[:-1]}, {extra})" if name.endswith(")") else f"{name} ({extra})"
    return name, tag.to_alpha3(variant="B"), tag.to_tag()


@cache
def all_languages() -> tuple[Language, ...]:
    text = resources.files("altdub").joinpath("data/languages.csv").read_text(encoding="utf-8")
    rows = csv.DictReader(text.splitlines())
    return tuple(Language(int(r["id"]), r["short_name"], *_describe(r["short_name"])) for r in rows)


@cache
def _index() -> dict[str, Language]:
    table: dict[str, Language] = {}
    for lang in all_languages():
        table[str(lang.id)] = lang
        table[lang.short_name.lower()] = lang
    return table


def lookup(value: int | str) -> Language | None:
    """Find a language by integer id or short_name (case-insensitive)."""
    return _index().get(str(value).strip().lower())


def by_id(language_id: int) -> Language:
    return _index()[str(language_id)]


_NAMED_IN_FILENAMES = 4  # a file of more languages is named by their count


def filename_label(language_ids: Sequence[int]) -> str:
    """The languages of a download in its name: ``es-es``, ``es-es+fr-fr``, or ``6-languages`` past four."""
    if len(language_ids) > _NAMED_IN_FILENAMES:
        return f"{len(language_ids)}-languages"
    return "+".join(by_id(i).short_name for i in language_ids)
