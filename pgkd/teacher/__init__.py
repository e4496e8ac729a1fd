"""LLM teachers for PGKD: the interface (:mod:`~pgkd.teacher.base`), a backend for any
OpenAI-compatible endpoint, a simulated oracle for measuring the loop, and output filters.

The embedded llama.cpp server lives in :mod:`pgkd.teacher.local`; import it from there.
"""

from pgkd.teacher.base import GenerationResult, Teacher, TeacherBudget, TeacherLabel, TeacherUsage
from pgkd.teacher.filters import NearDuplicateIndex, near_duplicate, normalise
from pgkd.teacher.openai_compat import OpenAICompatibleTeacher
from pgkd.teacher.simulated import SimulatedTeacher

__all__ = [
    "GenerationResult",
    "NearDuplicateIndex",
    "OpenAICompatibleTeacher",
    "SimulatedTeacher",
    "Teacher",
    "TeacherBudget",
    "TeacherLabel",
    "TeacherUsage",
    "near_duplicate",
    "normalise",
]
