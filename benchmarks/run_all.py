"""Run every benchmark behind BENCHMARKS.md, one after another (hours on a 2-core CPU).

python benchmarks/run_all.py

Each command is the one quoted with its table in BENCHMARKS.md; run them on a quiet machine, since
the timings share the CPU with anything else that runs.
"""

from __future__ import annotations

import shlex
import subprocess
import sys

COMMANDS = [
    "benchmarks/distill_seeds.py --datasets bbc wordnet --teachers simulated --seeds 0 1 2",
    "benchmarks/distill_seeds.py --datasets bbc wordnet --teachers local --seeds 0 1 2",
    "benchmarks/local_teacher_candidates.py 40 runs/local_teacher_candidates.json",
    "benchmarks/student_vs_teacher.py --datasets wordnet bbc --n 200 --shots 0 4",
    "benchmarks/student_modes.py --datasets wordnet bbc --seed 0",
    "benchmarks/learning.py --dataset wordnet --arms seed random pgkd --seeds 0 1 2",
    "benchmarks/learning.py --dataset wordnet --arms uncertainty --seeds 0 1 2 --random 320",
    "benchmarks/learning.py --dataset wordnet --seeds 0 --arms pgkd-no-report pgkd-no-hard-negatives "
    "pgkd-guided",
    "benchmarks/learning.py --dataset wordnet --arms pgkd-local --seeds 0",
    "benchmarks/learning.py --dataset bbc --arms seed random pgkd --seeds 0",
    "benchmarks/serving.py --n 600 --chars 2000 200 --seconds 40",
    "benchmarks/student_inference.py --datasets bbc wordnet",
    "benchmarks/swap_memory.py --swaps 20",
    "benchmarks/retrain_time.py --dataset wordnet --sizes 1000 3000 10000 --strategies head full-warm",
    "benchmarks/retrain_time.py --dataset wordnet --sizes 1000 3000 10000 --strategies full",
    "benchmarks/scale_out.py --workers 1 2 4 --n 1200 --chars 200",
    "benchmarks/learning.py --dataset foldoc --arms seed random pgkd --seeds 0 1 2",
    "benchmarks/out_of_taxonomy.py --datasets bbc wordnet foldoc",
    "benchmarks/class_suggestions.py --datasets bbc wordnet foldoc --seeds 0 1 2",
    "benchmarks/cascade.py --datasets bbc wordnet --n 100",
    "benchmarks/drift_recovery.py --dataset wordnet --weak 12 --before 300 --rate 3 --judge 200 --minutes 15",
]

if __name__ == "__main__":
    for command in COMMANDS:
        print("$ python", command, flush=True)
        subprocess.run([sys.executable, *shlex.split(command)], check=True)
