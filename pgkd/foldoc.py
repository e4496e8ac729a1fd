"""FOLDOC, the Free On-line Dictionary of Computing, as a many-class, imbalanced topic task.

Each entry of the dictionary opens with its subject tags (``<networking>``, ``<language, history>``);
the text is the paragraph they open, the label the first tag. Tags with fewer than ``min_count``
texts are left out: 6,621 texts in 37 classes, 46 to 896 per class (Debian's ``dict-foldoc``
20230119). Unlike WordNet glosses, these are encyclopaedic paragraphs of one to several sentences.
"""

from __future__ import annotations

import gzip
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

from pgkd.data import Corpus, Example, corpus_of
from pgkd.errors import DataError

FOLDOC_FILE = Path("/usr/share/dictd/foldoc.dict.dz")
_TAGGED = re.compile(r"\s*<([a-z][a-z ,\-]+)>\s+(.*)", re.S)

# One line per class for the teacher's prompt: several tag names alone mislead ("body", "unit").
FOLDOC_DESCRIPTIONS = {
    "algorithm": "algorithms and their methods",
    "application": "application software and its uses",
    "architecture": "computer and processor architecture",
    "body": "standards bodies, organisations and committees",
    "character": "characters, character sets and their names",
    "chat": "chat and internet slang abbreviations",
    "communications": "data communications, signalling and transmission",
    "company": "companies in the computer industry",
    "computer": "particular computers and computer models",
    "data": "data, its representation and handling",
    "database": "databases and database systems",
    "electronics": "electronic components and circuits",
    "games": "computer games",
    "graphics": "computer graphics and imaging",
    "hardware": "computer hardware and peripherals",
    "humour": "jokes, humour and funny usage",
    "jargon": "hacker jargon and slang",
    "job": "jobs and occupations in computing",
    "language": "programming languages",
    "logic": "logic and formal reasoning",
    "mathematics": "mathematics",
    "messaging": "e-mail, news and messaging",
    "networking": "computer networks and the internet",
    "operating system": "operating systems and their parts",
    "person": "people in computing",
    "processor": "processors and microprocessors",
    "programming": "programming concepts and techniques",
    "protocol": "communication protocols",
    "security": "computer security",
    "software": "software in general, its kinds and licences",
    "standard": "standards and specifications",
    "storage": "storage devices and memory",
    "testing": "software testing",
    "text": "text, documents and their formats",
    "theory": "theory of computation and computer science",
    "tool": "software tools and utilities",
    "unit": "units of measure",
    "web": "the World Wide Web",
}


def load_foldoc(path: str | Path = FOLDOC_FILE, *, min_count: int = 40) -> Corpus:
    """The tagged paragraphs of FOLDOC, labelled with their first tag (37 classes by default).

    >>> load_foldoc().labels[:3]
    ('algorithm', 'application', 'architecture')
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"FOLDOC file {path} is missing; install it: apt-get install dict-foldoc")
    try:
        with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable dictd file: {exc}") from exc
    examples: list[Example] = []
    for paragraph in re.split(r"\n\s*\n", raw):
        match = _TAGGED.match(paragraph)
        if not match:
            continue
        label = match.group(1).split(",")[0].strip()
        # {braces} mark cross-references in the dictionary: markup, not words.
        text = " ".join(match.group(2).replace("{", "").replace("}", "").split())
        if len(text.split()) >= 5:
            examples.append(Example(text, label))
    counts = Counter(e.label for e in examples)
    kept = [e for e in examples if counts[e.label] >= min_count]
    corpus = corpus_of("foldoc", kept, str(path))
    descriptions = {c: FOLDOC_DESCRIPTIONS.get(c, c) for c in corpus.labels}
    return replace(corpus, descriptions=descriptions)
