"""pgkd: Performance-Guided Knowledge Distillation of an LLM teacher into a small student classifier.

>>> from pgkd import DistillConfig, Student, distill, load_corpus, make_splits   # doctest: +SKIP
>>> splits = make_splits(load_corpus("bbc"), seed=0)                          # doctest: +SKIP
>>> result = distill(splits, teacher, DistillConfig(steps=10))                # doctest: +SKIP
"""

from pgkd.data import Example, Splits, make_splits
from pgkd.datasets import load_corpus
from pgkd.distill import distill
from pgkd.distill_records import DistillConfig, DistillResult
from pgkd.errors import PGKDError
from pgkd.student import Student
from pgkd.training import TrainConfig

__all__ = [
    "DistillConfig",
    "DistillResult",
    "Example",
    "PGKDError",
    "Splits",
    "Student",
    "TrainConfig",
    "distill",
    "load_corpus",
    "make_splits",
]
__version__ = "0.1.0"
