"""Run every benchmark behind BENCHMARKS.md, one after another (hours on a 2-core CPU).

python benchmarks/run_all.py
"""

from __future__ import annotations

import subprocess
import sys

COMMANDS = [
    [
        "benchmarks/distill_seeds.py",
        "--datasets",
        "bbc",
        "wordnet",
        "--teachers",
        "simulated",
        "--seeds",
        "0",
        "1",
        "2",
    ],
    [
        "benchmarks/distill_seeds.py",
        "--datasets",
        "bbc",
        "wordnet",
        "--teachers",
        "local",
        "--seeds",
        "0",
        "1",
        "2",
    ],
    ["benchmarks/student_vs_teacher.py", "--datasets", "bbc", "wordnet", "--n", "200", "--shots", "0", "4"],
    ["benchmarks/student_modes.py", "--datasets", "bbc", "wordnet"],
    ["benchmarks/local_teacher_candidates.py", "40", "runs/local_teacher_candidates.json"],
]

if __name__ == "__main__":
    for command in COMMANDS:
        print("$ python", " ".join(command), flush=True)
        subprocess.run([sys.executable, *command], check=True)
