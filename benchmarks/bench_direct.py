"""What directing costs on a long song: the analysis with beats, onsets and HPSS (librosa).

Each variant runs in a fresh process on the same WAV (the built-in example music, tiled to
`--minutes` at 44.1 kHz, 16-bit mono) and reports its wall time and its own peak RSS, so
one variant's memory cannot hide another's.

    python -m benchmarks.bench_direct --minutes 30 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import markdown_table, write_results

VARIANTS = {
    "seed's analysis (mix)": {},
    "+ onsets (--pulse)": {"onsets": True},
    "+ beats (--snap-to-beats)": {"snap_to_beats": True},
    "harmonic source": {"analysis_source": "harmonic"},
    "percussive source + beats": {"analysis_source": "percussive", "snap_to_beats": True},
}

_CHILD = """
import json, resource, sys, time
from ganterp_fast.engine.analysis.analyze import AnalysisOptions, analyze
options = AnalysisOptions(**json.loads(sys.argv[2]))
began = time.perf_counter()
result = analyze(sys.argv[1], options)
seconds = time.perf_counter() - began
print(json.dumps({
    "seconds": seconds,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "points": len(result.inflection_points),
    "beats": None if result.beat_times is None else len(result.beat_times),
    "audio_s": result.duration_s,
}))
"""


def write_song(path: Path, minutes: float, rate: int = 44100) -> Path:
    """The example music (one minute, regenerated at `rate`) repeated to `minutes`, written in blocks."""
    import soundfile

    from ganterp_fast.engine.audio.example import example_music

    if path.exists() and soundfile.info(str(path)).duration >= minutes * 60 - 1:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    minute = example_music(60.0, rate)[0]
    with soundfile.SoundFile(str(path), "w", samplerate=rate, channels=1, subtype="PCM_16") as out:
        for _ in range(int(round(minutes))):
            out.write(minute)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--work", default=str(Path.home() / ".cache" / "ganterp-bench"))
    parser.add_argument("--out", default=None, help="folder for direct.md / direct.json")
    args = parser.parse_args(argv)
    song = write_song(Path(args.work) / f"long-{int(args.minutes)}min-44k.wav", args.minutes)
    rows, results = [], {}
    for name, fields in VARIANTS.items():
        began = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, str(song), json.dumps(fields)], capture_output=True, text=True, check=True
        )
        record = json.loads(done.stdout.strip().splitlines()[-1])
        record["process_s"] = time.perf_counter() - began
        record["load_average_after"] = os.getloadavg()[0]
        results[name] = record
        rows.append(
            [name, f"{record['seconds']:.1f}", f"{record['peak_rss_mb']:.0f}", record["points"], record["beats"]]
        )
        print(name, record, file=sys.stderr, flush=True)
    table = markdown_table(["analysis", "seconds", "peak RSS MB", "points", "beats"], rows)
    write_results("direct", {"minutes": args.minutes, "sample_rate": 44100, "variants": results}, table, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
