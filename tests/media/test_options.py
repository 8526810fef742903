"""Unit tests of resolve_options: defaults per format, canonical resolution, and every refusal naming its key."""

from __future__ import annotations

from typing import Any

import pytest

from altdub.media.catalogue import CATALOGUE
from altdub.media.options import ExportOptions, OptionError, resolve_options
from altdub.media.probe import StreamInfo

ALL_FORMATS = list(CATALOGUE)
HANDOFF_FORMATS = [name for name, f in CATALOGUE.items() if f.handoff]  # every stem at 48 kHz 24-bit; a timecode
VIDEO_FORMATS = [name for name, f in CATALOGUE.items() if f.is_video]
AUDIO_FORMATS = [name for name, f in CATALOGUE.items() if not f.is_video and not f.handoff]
PACKAGE_FORMATS = [name for name, f in CATALOGUE.items() if f.package_entry is not None]  # stereo AAC, 44.1/48 kHz
MIXED_FORMATS = [name for name in ALL_FORMATS if name not in HANDOFF_FORMATS]  # one mix, its loudness and stem chosen
FILE_FORMATS = [name for name in ALL_FORMATS if name not in PACKAGE_FORMATS and name not in HANDOFF_FORMATS]
AAC_FORMATS = ["aac", "m4a", "mp4", "mov"]
BITRATE_FORMATS = ["mp3", *AAC_FORMATS]
LOSSLESS_FORMATS = ["flac", "wav", "mkv", "mxf"]
SUBTITLE_FORMATS = ["mkv", "mp4", "mov", "hls", "dash"]


def _dub(sample_rate: int | None = 48000, channels: int | None = 2) -> StreamInfo:
    return StreamInfo(
        index=0, kind="audio", codec="pcm_s16le", duration=4.0, sample_rate=sample_rate, channels=channels
    )


def _refused(output_format: str, requested: dict[str, Any], dub: StreamInfo | None = None) -> OptionError:
    with pytest.raises(OptionError) as caught:
        resolve_options(output_format, requested, dub or _dub())
    return caught.value


def test_the_format_list_is_the_spec_list() -> None:
    assert sorted(AUDIO_FORMATS) == ["aac", "flac", "m4a", "mp3", "wav"]
    assert sorted(VIDEO_FORMATS) == ["dash", "hls", "mkv", "mov", "mp4", "mxf"]
    assert sorted(PACKAGE_FORMATS) == ["dash", "hls"]
    assert "tracks_zip" in HANDOFF_FORMATS


# --- defaults ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("output_format", ALL_FORMATS)
def test_defaults_of_every_format(output_format: str) -> None:
    options = resolve_options(output_format, {}, _dub())
    assert isinstance(options, ExportOptions)
    assert options.sample_rate == 48000
    assert options.channels == 2
    assert options.loudness is None and options.loudness_target is None
    assert options.stem == "mix"
    assert options.include_original_audio is False
    assert options.subtitles == "none"


@pytest.mark.parametrize("channels", [1, 2])
def test_mp3_defaults_to_192k_whatever_the_channels(channels: int) -> None:
    assert resolve_options("mp3", {}, _dub(channels=channels)).audio_bitrate == 192_000


@pytest.mark.parametrize("output_format", AAC_FORMATS)
@pytest.mark.parametrize(("channels", "bitrate"), [(1, 128_000), (2, 192_000), (6, 384_000)])
def test_aac_default_bitrate_follows_the_dub_channels(output_format: str, channels: int, bitrate: int) -> None:
    options = resolve_options(output_format, {}, _dub(channels=channels))
    assert (options.channels, options.audio_bitrate) == (channels, bitrate)


@pytest.mark.parametrize("output_format", AAC_FORMATS)
@pytest.mark.parametrize(("channels", "bitrate"), [(1, 128_000), (2, 192_000), (6, 384_000)])
def test_aac_default_bitrate_follows_the_channels_asked_for(output_format: str, channels: int, bitrate: int) -> None:
    options = resolve_options(output_format, {"channels": channels}, _dub(channels=2))
    assert (options.channels, options.audio_bitrate) == (channels, bitrate)


@pytest.mark.parametrize("output_format", LOSSLESS_FORMATS)
def test_lossless_and_pcm_formats_have_no_bitrate(output_format: str) -> None:
    assert resolve_options(output_format, {}, _dub()).audio_bitrate is None


@pytest.mark.parametrize("output_format", [f for f in FILE_FORMATS if f not in ("mxf", "mp3")])
@pytest.mark.parametrize("rate", [22050, 44100, 48000, 96000, 16000, 32000])
def test_sample_rate_defaults_to_the_dub_own(output_format: str, rate: int) -> None:
    assert resolve_options(output_format, {}, _dub(sample_rate=rate)).sample_rate == rate


@pytest.mark.parametrize("output_format", PACKAGE_FORMATS)
@pytest.mark.parametrize(
    ("rate", "expected"), [(44100, 44100), (48000, 48000), (22050, 44100), (32000, 44100), (96000, 48000)]
)
def test_packages_keep_a_44k_or_48k_dub_rate_else_the_nearest_above(
    output_format: str, rate: int, expected: int
) -> None:
    assert resolve_options(output_format, {}, _dub(sample_rate=rate)).sample_rate == expected


@pytest.mark.parametrize("rate", [22050, 44100, 48000, 96000, 16000])
def test_mxf_sample_rate_is_always_48k(rate: int) -> None:
    assert resolve_options("mxf", {}, _dub(sample_rate=rate)).sample_rate == 48000


@pytest.mark.parametrize(("rate", "expected"), [(22050, 22050), (44100, 44100), (48000, 48000), (96000, 48000)])
def test_mp3_sample_rate_is_the_dub_own_up_to_48k(rate: int, expected: int) -> None:
    assert resolve_options("mp3", {}, _dub(sample_rate=rate)).sample_rate == expected


@pytest.mark.parametrize("rate", [88200, 96000, 192000])
def test_mp3_default_rate_is_never_above_48k(rate: int) -> None:
    assert resolve_options("mp3", {}, _dub(sample_rate=rate)).sample_rate <= 48000


@pytest.mark.parametrize("output_format", FILE_FORMATS)
@pytest.mark.parametrize("channels", [1, 2])
def test_channels_default_to_the_dub_own(output_format: str, channels: int) -> None:
    assert resolve_options(output_format, {}, _dub(channels=channels)).channels == channels


@pytest.mark.parametrize("output_format", [f for f in FILE_FORMATS if f != "mp3"])
def test_six_channels_stay_six(output_format: str) -> None:
    assert resolve_options(output_format, {}, _dub(channels=6)).channels == 6


@pytest.mark.parametrize("output_format", PACKAGE_FORMATS)
@pytest.mark.parametrize("channels", [1, 2, 6])
def test_packages_are_stereo_at_128k_whatever_the_dub(output_format: str, channels: int) -> None:
    options = resolve_options(output_format, {}, _dub(channels=channels))
    assert (options.channels, options.audio_bitrate) == (2, 128_000)


def test_mp3_takes_at_most_two_channels_of_the_dub() -> None:
    options = resolve_options("mp3", {}, _dub(channels=6))
    assert (options.channels, options.audio_bitrate) == (2, 192_000)


def test_a_dub_without_rate_or_channels_defaults_to_48k_stereo() -> None:
    options = resolve_options("flac", {}, _dub(sample_rate=None, channels=None))
    assert (options.sample_rate, options.channels) == (48000, 2)


# --- values asked for ---------------------------------------------------------------------------------


@pytest.mark.parametrize("output_format", BITRATE_FORMATS)
@pytest.mark.parametrize(("value", "bps"), [("32k", 32_000), ("128k", 128_000), ("256k", 256_000), ("320k", 320_000)])
def test_bitrates_in_range_are_taken(output_format: str, value: str, bps: int) -> None:
    assert resolve_options(output_format, {"audio_bitrate": value}, _dub()).audio_bitrate == bps


@pytest.mark.parametrize("output_format", [f for f in FILE_FORMATS if f not in ("mxf", "mp3")])
@pytest.mark.parametrize("rate", [22050, 44100, 48000, 96000])
def test_every_listed_sample_rate_is_taken(output_format: str, rate: int) -> None:
    assert resolve_options(output_format, {"sample_rate": rate}, _dub()).sample_rate == rate


@pytest.mark.parametrize("rate", [22050, 44100, 48000])
def test_mp3_takes_rates_up_to_48k(rate: int) -> None:
    assert resolve_options("mp3", {"sample_rate": rate}, _dub()).sample_rate == rate


@pytest.mark.parametrize("output_format", MIXED_FORMATS)
@pytest.mark.parametrize("loudness", ["ebu_r128", "atsc_a85", "streaming"])
def test_loudness_targets(output_format: str, loudness: str) -> None:
    target = resolve_options(output_format, {"loudness": loudness}, _dub()).loudness_target
    expected = {"ebu_r128": (-23.0, -1.0), "atsc_a85": (-24.0, -2.0), "streaming": (-14.0, -1.0)}[loudness]
    assert target is not None and (target.integrated, target.true_peak) == expected


@pytest.mark.parametrize("output_format", MIXED_FORMATS)
@pytest.mark.parametrize("stem", ["mix", "voice", "background"])
def test_stems(output_format: str, stem: str) -> None:
    assert resolve_options(output_format, {"stem": stem}, _dub()).stem == stem


@pytest.mark.parametrize("output_format", VIDEO_FORMATS)
def test_video_formats_take_the_original_audio(output_format: str) -> None:
    assert resolve_options(output_format, {"include_original_audio": True}, _dub()).include_original_audio is True


@pytest.mark.parametrize("output_format", SUBTITLE_FORMATS)
def test_mkv_mp4_mov_and_packages_take_soft_subtitles(output_format: str) -> None:
    assert resolve_options(output_format, {"subtitles": "soft"}, _dub()).subtitles == "soft"


# --- a spelled-out default is the same export as an omitted one -----------------------------------------


@pytest.mark.parametrize(
    ("output_format", "requested", "dub"),
    [
        ("mp3", {"audio_bitrate": "192k"}, _dub()),
        ("mp3", {"audio_bitrate": "192k"}, _dub(channels=1)),
        ("aac", {"audio_bitrate": "128k"}, _dub(channels=1)),
        ("m4a", {"audio_bitrate": "192k"}, _dub(channels=2)),
        ("flac", {"sample_rate": 48000}, _dub()),
        ("mp3", {"sample_rate": 48000}, _dub()),
        ("mp3", {"sample_rate": 48000}, _dub(sample_rate=96000)),
        ("wav", {"sample_rate": 44100}, _dub(sample_rate=44100)),
        ("mxf", {"sample_rate": 48000}, _dub(sample_rate=44100)),
        ("mkv", {"channels": 2}, _dub()),
        ("mp3", {"channels": 2}, _dub(channels=6)),
        ("flac", {"stem": "mix"}, _dub()),
        ("mp4", {"loudness": None}, _dub()),
        ("mp4", {"include_original_audio": False}, _dub()),
        ("wav", {"include_original_audio": False}, _dub()),
        ("mp3", {"subtitles": "none"}, _dub()),
        ("mkv", {"subtitles": "none"}, _dub()),
        ("mxf", {"subtitles": "none"}, _dub()),
        ("mp4", {"audio_bitrate": None, "sample_rate": None, "channels": None, "stem": None}, _dub()),
        (
            "mp4",
            {
                "audio_bitrate": "192k",
                "sample_rate": 48000,
                "channels": 2,
                "loudness": None,
                "stem": "mix",
                "include_original_audio": False,
                "subtitles": "none",
            },
            _dub(),
        ),
    ],
)
def test_a_spelled_out_default_resolves_like_its_omission(
    output_format: str, requested: dict[str, Any], dub: StreamInfo
) -> None:
    spelled = resolve_options(output_format, requested, dub)
    omitted = resolve_options(output_format, {}, dub)
    assert spelled == omitted
    assert spelled.as_dict() == omitted.as_dict()
    assert hash(spelled) == hash(omitted)


@pytest.mark.parametrize("output_format", AAC_FORMATS)
def test_the_six_channel_aac_default_can_be_spelled_out(output_format: str) -> None:
    """The default for 5.1 AAC is 384k (spec §3 "format default"); asking for it by name must be the same export."""
    dub = _dub(channels=6)
    omitted = resolve_options(output_format, {}, dub)
    assert omitted.audio_bitrate == 384_000
    assert resolve_options(output_format, {"audio_bitrate": "384k"}, dub) == omitted
    assert resolve_options(output_format, {"channels": 6, "audio_bitrate": "384k"}, _dub()) == omitted


@pytest.mark.parametrize("value", ["192K", " 192k "])
def test_bitrate_spelling_is_canonical(value: str) -> None:
    assert resolve_options("mp3", {"audio_bitrate": value}, _dub()) == resolve_options("mp3", {}, _dub())


def test_different_options_resolve_differently() -> None:
    base = resolve_options("mp4", {}, _dub())
    for requested in (
        {"audio_bitrate": "256k"},
        {"sample_rate": 44100},
        {"channels": 1},
        {"loudness": "ebu_r128"},
        {"stem": "voice"},
        {"include_original_audio": True},
        {"subtitles": "soft"},
    ):
        assert resolve_options("mp4", requested, _dub()) != base, requested


def test_as_dict_holds_every_option() -> None:
    options = resolve_options("mp4", {"loudness": "streaming", "subtitles": "soft"}, _dub())
    assert options.as_dict() == {
        "sample_rate": 48000,
        "channels": 2,
        "audio_bitrate": 192_000,
        "loudness": "streaming",
        "stem": "mix",
        "include_original_audio": False,
        "subtitles": "soft",
    }


# --- refusals: each names its key -----------------------------------------------------------------------


@pytest.mark.parametrize("output_format", LOSSLESS_FORMATS)
@pytest.mark.parametrize("value", ["192k", "320k"])
def test_bitrate_does_not_apply_to_lossless_or_pcm(output_format: str, value: str) -> None:
    assert _refused(output_format, {"audio_bitrate": value}).key == "audio_bitrate"


@pytest.mark.parametrize("output_format", BITRATE_FORMATS)
@pytest.mark.parametrize("value", ["31k", "513k", "abc", "", "192", "192kbps", "1000k", "-192k", "19.2k", "0k", 192])
def test_bad_bitrates(output_format: str, value: Any) -> None:
    """Past LAME's 320k for mp3; past 512k for AAC (whose 5.1 default is 384k)."""
    error = _refused(output_format, {"audio_bitrate": value})
    assert error.key == "audio_bitrate"
    assert error.message and str(error) == error.message


@pytest.mark.parametrize(
    ("output_format", "rate"),
    [
        ("mp3", 96000),
        ("mxf", 44100),
        ("mxf", 22050),
        ("mxf", 96000),
        *((f, rate) for f in PACKAGE_FORMATS for rate in (22050, 96000)),
        *((f, 12345) for f in ALL_FORMATS),
        *((f, 0) for f in ALL_FORMATS),
        ("flac", 192000),
        ("flac", "48000"),
    ],
)
def test_bad_sample_rates(output_format: str, rate: Any) -> None:
    assert _refused(output_format, {"sample_rate": rate}).key == "sample_rate"


@pytest.mark.parametrize(
    ("output_format", "channels"),
    [
        ("mp3", 6),
        *((f, 3) for f in ALL_FORMATS),
        *((f, n) for f in PACKAGE_FORMATS for n in (1, 6)),
        ("flac", 0),
        ("wav", 8),
        ("mp4", "2"),
    ],
)
def test_bad_channel_counts(output_format: str, channels: Any) -> None:
    assert _refused(output_format, {"channels": channels}).key == "channels"


@pytest.mark.parametrize("value", ["loud", "EBU_R128", "r128", "", -23])
def test_bad_loudness(value: Any) -> None:
    assert _refused("mp4", {"loudness": value}).key == "loudness"


@pytest.mark.parametrize("value", ["drums", "Mix", "", "music"])
def test_bad_stems(value: str) -> None:
    assert _refused("flac", {"stem": value}).key == "stem"


@pytest.mark.parametrize("output_format", AUDIO_FORMATS)
def test_original_audio_applies_to_video_formats_only(output_format: str) -> None:
    assert _refused(output_format, {"include_original_audio": True}).key == "include_original_audio"


@pytest.mark.parametrize("output_format", [f for f in ALL_FORMATS if f not in SUBTITLE_FORMATS])
def test_soft_subtitles_apply_to_mkv_mp4_mov_and_packages_only(output_format: str) -> None:
    assert _refused(output_format, {"subtitles": "soft"}).key == "subtitles"


@pytest.mark.parametrize("output_format", ALL_FORMATS)
@pytest.mark.parametrize("value", ["hard", "burned", "", "Soft"])
def test_bad_subtitle_modes(output_format: str, value: str) -> None:
    assert _refused(output_format, {"subtitles": value}).key == "subtitles"


def test_option_error_is_a_value_error() -> None:
    error = _refused("flac", {"audio_bitrate": "192k"})
    assert isinstance(error, ValueError)
    assert "flac" in error.message


def test_mp3_refuses_past_lames_ceiling() -> None:
    assert _refused("mp3", {"audio_bitrate": "321k"}).key == "audio_bitrate"


@pytest.mark.parametrize("output_format", ["aac", "m4a", "mp4", "mov"])
def test_aac_takes_up_to_512k(output_format: str) -> None:
    assert resolve_options(output_format, {"audio_bitrate": "512k"}, _dub()).audio_bitrate == 512_000


@pytest.mark.parametrize("output_format", PACKAGE_FORMATS)
def test_a_start_timecode_does_not_apply_to_packages(output_format: str) -> None:
    assert _refused(output_format, {"start_timecode": "01:00:00:00"}).key == "start_timecode"


@pytest.mark.parametrize("output_format", PACKAGE_FORMATS)
@pytest.mark.parametrize(("value", "bps"), [("32k", 32_000), ("96k", 96_000), ("512k", 512_000)])
def test_packages_take_an_aac_bitrate(output_format: str, value: str, bps: int) -> None:
    assert resolve_options(output_format, {"audio_bitrate": value}, _dub()).audio_bitrate == bps
