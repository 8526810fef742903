import av
from altdub.media.probe import probe
FORMATS = ["flac","wav","mp3","aac","m4a","mp4","mov","mkv","mxf"]
def test_scratch(exports, media):
    run = exports.run({"source": media.video, "dub_es-es": media.dub_wav})
    for f in FORMATS: exports.request(run, f)
    print(probe(media.video))
    print(probe(media.dub_wav))
    for f in FORMATS:
        p = exports.file(run, f)
        info = probe(p)
        print("=====", f, p.read_bytes()[:16])
        print(info.format_name, info.duration, info.tags)
        for s in info.streams: print("   ", s)
        with av.open(str(p)) as c:
            for s in c.streams:
                print("   av:", s.type, s.codec_context.name, getattr(s.codec_context, "profile", None), s.codec_context.bit_rate, s.metadata, s.disposition)
