"""Loading datasets (pgkd/datasets.py) and cutting the sparse-regime splits (pgkd/data.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from pgkd.data import Corpus, Example, Splits, make_splits, validate_labels
from pgkd.datasets import load_bbc, load_corpus, load_table, load_wordnet
from pgkd.errors import DataError

LABELS = ("alpha", "beta", "gamma")


def synthetic(per_class: int = 600, labels: tuple[str, ...] = LABELS) -> Corpus:
    examples = [Example(f"{label} text number {i}", label) for label in labels for i in range(per_class)]
    return Corpus("synthetic", labels, tuple(examples))


def texts(split: tuple[Example, ...]) -> set[str]:
    return {e.text for e in split}


# --- tables -------------------------------------------------------------------------------------


def test_csv_with_custom_columns(tmp_path: Path) -> None:
    path = tmp_path / "tickets.csv"
    path.write_text('id,body,queue\n1,"printer, on fire",it\n2,  refund please ,billing\n3,vpn down, it \n')
    corpus = load_table(path, text_column="body", label_column="queue")
    assert corpus.name == "tickets"
    assert corpus.labels == ("billing", "it")
    assert corpus.examples == (
        Example("printer, on fire", "it"),
        Example("refund please", "billing"),
        Example("vpn down", "it"),
    )


def test_jsonl_with_custom_columns_and_non_string_labels(tmp_path: Path) -> None:
    path = tmp_path / "reviews.jsonl"
    rows = [{"review": "great", "stars": 5}, {"review": "awful", "stars": 1}, {"review": "fine", "stars": 5}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    corpus = load_table(path, text_column="review", label_column="stars")
    assert corpus.labels == ("1", "5")
    assert [e.label for e in corpus.examples] == ["5", "1", "5"]


def test_json_list_of_objects(tmp_path: Path) -> None:
    path = tmp_path / "list.json"
    path.write_text(json.dumps([{"text": "a", "label": "x"}, {"text": "b", "label": "y"}]))
    assert load_table(path).examples == (Example("a", "x"), Example("b", "y"))


def test_load_corpus_dispatches_paths_and_truncates(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_text("text,label\n" + "abcdefghij,x\n" + "klmnopqrst,y\n")
    corpus = load_corpus(str(path), max_chars=4)
    assert [e.text for e in corpus.examples] == ["abcd", "klmn"]
    with pytest.raises(DataError, match="unknown dataset 'imdb'"):
        load_corpus("imdb")
    with pytest.raises(DataError, match="max_chars"):
        load_corpus(str(path), max_chars=0)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", "", "is empty"),
        ("blank.jsonl", "\n  \n", "is empty"),
        ("header.csv", "text,label\n", "no data rows"),
        (
            "cols.csv",
            "body,label\nhi,x\n",
            r"missing column\(s\) \['text'\]; columns found: \['body', 'label'\]",
        ),
        ("cols.jsonl", '{"text": "a", "label": "x"}\n{"txt": "b", "label": "y"}\n', r"cols.jsonl:2: missing"),
        ("one.csv", "text,label\na,x\nb,x\n", "at least 2 classes"),
        ("nolabel.csv", "text,label\na,x\nb,\nc,y\n", r"nolabel.csv:3: empty label"),
        ("notext.jsonl", '{"text": "a", "label": "x"}\n{"text": " ", "label": "y"}\n', r":2: empty text"),
        ("nulllabel.jsonl", '{"text": "a", "label": null}\n', r":1: empty label"),
        ("bad.jsonl", '{"text": "a", "label": "x"}\n{"text": \n', r"bad.jsonl:2: invalid JSON"),
        ("scalar.jsonl", "[1, 2]\n", r":1: expected a JSON object"),
        ("data.parquet", "x", "unsupported file type"),
    ],
)
def test_table_errors_name_file_and_line(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_table(path)


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read"):
        load_table(tmp_path / "absent.csv")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"text,label\n\xff\xfe,x\n")
    with pytest.raises(DataError, match="UTF-8"):
        load_table(binary)


# --- labels -------------------------------------------------------------------------------------


def test_validate_labels_names_the_unknown_ones() -> None:
    validate_labels(["alpha", "beta", "alpha"], LABELS)
    with pytest.raises(DataError, match=r"2 unknown label\(s\): 'delta', 'omega'") as info:
        validate_labels(["alpha", "omega", "delta"], LABELS)
    assert "'alpha'" not in str(info.value).split(";")[0]


def test_corpus_sorts_labels_and_rejects_examples_outside_taxonomy() -> None:
    corpus = Corpus("c", ("b", "a", "b"), (Example("t", "a"),))
    assert corpus.labels == ("a", "b")
    with pytest.raises(DataError, match="'c'"):
        Corpus("c", ("a", "b"), (Example("t", "c"),))


# --- splits -------------------------------------------------------------------------------------


def test_make_splits_sizes_and_disjointness() -> None:
    splits = make_splits(synthetic(), seed=3)
    assert (len(splits.train), len(splits.validation), len(splits.test), len(splits.traffic)) == (
        800,
        200,
        360,  # 0.2 * 1800
        440,
    )
    parts = [texts(s) for s in (splits.train, splits.validation, splits.test, splits.traffic)]
    assert sum(len(p) for p in parts) == len(set().union(*parts)) == 1800
    assert splits.labels == LABELS
    assert splits.summary() == {
        "name": "synthetic",
        "seed": 3,
        "n_labels": 3,
        "sizes": {"train": 800, "validation": 200, "test": 360, "traffic": 440},
        "train_per_class": dict(Counter(e.label for e in splits.train)),
    }


def test_make_splits_is_stratified_even_for_unbalanced_classes() -> None:
    counts = {"alpha": 1500, "beta": 450, "gamma": 50}
    examples = [Example(f"{label} {i}", label) for label, n in counts.items() for i in range(n)]
    splits = make_splits(Corpus("skewed", LABELS, tuple(examples)), seed=0, max_test=400)
    assert len(splits.test) == 400
    for split in (splits.train, splits.validation, splits.test):
        seen = Counter(e.label for e in split)
        for label, n in counts.items():
            assert abs(seen[label] - len(split) * n / 2000) <= 1, (label, seen)
    # Split order is shuffled: a student that does not shuffle must not see class blocks.
    first = [e.label for e in splits.train[:50]]
    assert len(set(first)) > 1


def test_make_splits_caps_traffic_and_test() -> None:
    splits = make_splits(synthetic(), seed=0, max_test=100, max_traffic=50)
    assert len(splits.test) == 100
    assert len(splits.traffic) == 50
    assert make_splits(synthetic(), seed=0, max_traffic=0).traffic == ()


def test_make_splits_is_deterministic_per_seed() -> None:
    corpus = synthetic()
    a, b, c = make_splits(corpus, seed=7), make_splits(corpus, seed=7), make_splits(corpus, seed=8)
    assert a == b
    assert a.fingerprint() == b.fingerprint()
    assert texts(a.train) != texts(c.train)
    assert texts(a.test) != texts(c.test)
    assert a.fingerprint() != c.fingerprint()


def test_fingerprint_is_stable_across_processes() -> None:
    # Different hash seeds: nothing in splitting or hashing may depend on Python's set/str hashing.
    script = (
        "from pgkd.data import Corpus, Example, make_splits\n"
        "labels = ('alpha', 'beta', 'gamma')\n"
        "ex = tuple(Example(f'{l} text number {i}', l) for l in labels for i in range(600))\n"
        "print(make_splits(Corpus('synthetic', ('gamma', 'alpha', 'beta'), ex), seed=5).fingerprint())\n"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
        ).stdout.strip()
        for hash_seed in ("1", "2")
    }
    assert outputs == {make_splits(synthetic(), seed=5).fingerprint()}


def test_fingerprint_is_sensitive_to_every_labelled_split() -> None:
    base = make_splits(synthetic(), seed=0)
    relabelled = Example(base.test[0].text, "beta" if base.test[0].label != "beta" else "alpha")
    variants = [
        Splits(**{**vars(base), "name": "other"}),
        Splits(**{**vars(base), "seed": 1}),
        Splits(**{**vars(base), "train": base.train[1:]}),
        Splits(**{**vars(base), "validation": base.validation[::-1]}),
        Splits(**{**vars(base), "test": (relabelled, *base.test[1:])}),
    ]
    prints = {v.fingerprint() for v in variants}
    assert len(prints) == len(variants) and base.fingerprint() not in prints
    # Traffic is deliberately left out: its cap must not change what results are compared on.
    assert Splits(**{**vars(base), "traffic": ()}).fingerprint() == base.fingerprint()


def test_make_splits_drops_singleton_classes_with_a_warning() -> None:
    corpus = Corpus("c", (*LABELS, "lonely"), synthetic().examples + (Example("alone", "lonely"),))
    with pytest.warns(UserWarning, match="lonely"):
        splits = make_splits(corpus)
    assert splits.labels == LABELS
    assert "alone" not in texts(splits.test) | texts(splits.traffic) | texts(splits.train)


def test_make_splits_refuses_too_small_corpora() -> None:
    with pytest.raises(DataError, match=r"300 examples, 60 go to test, leaving 240"):
        make_splits(synthetic(per_class=100))
    one = Corpus("c", ("alpha", "beta"), tuple(Example(f"t{i}", "alpha") for i in range(50)))
    with pytest.raises(DataError, match="at least 2 classes"), pytest.warns(UserWarning):
        make_splits(one, n_train=10, n_validation=5)
    with pytest.raises(DataError, match="test_fraction"):
        make_splits(synthetic(), test_fraction=1.5)
    with pytest.raises(DataError, match="max_test and max_traffic"):
        make_splits(synthetic(), max_traffic=-1)


# --- built-in datasets --------------------------------------------------------------------------


def test_bbc_loader() -> None:
    with pytest.warns(UserWarning, match="dropped 101 duplicate"):
        corpus = load_bbc()
    assert corpus.name == "bbc"
    assert corpus.labels == ("business", "entertainment", "politics", "sports", "tech")
    assert len(corpus.examples) == 2124  # 2,225 articles, 101 of them repeats
    assert len({" ".join(e.text.split()).casefold() for e in corpus.examples}) == 2124
    assert all(e.text.strip() and "\n" not in e.text and "  " not in e.text for e in corpus.examples)
    assert corpus.examples[0].text.startswith("Ad sales boost Time Warner profit. Quarterly profits")
    splits = make_splits(corpus, seed=0)
    assert splits.summary()["sizes"] == {"train": 800, "validation": 200, "test": 425, "traffic": 699}


def test_wordnet_loader() -> None:
    # No skip when /usr/share/wordnet is absent: CI installs wordnet-base, a missing corpus is a failure.
    corpus = load_wordnet()
    assert len(corpus.labels) == 41
    assert all(label.startswith(("noun.", "verb.")) for label in corpus.labels)
    assert len(corpus.examples) > 90_000
    assert len({e.text for e in corpus.examples}) == len(corpus.examples)
    assert not any('"' in e.text for e in corpus.examples)


def test_wordnet_parsing_on_a_fake_install(tmp_path: Path) -> None:
    (tmp_path / "lexnames").write_text("03\tnoun.Tops\t1\n05\tnoun.animal\t1\n29\tverb.custom\t2\n")
    (tmp_path / "data.noun").write_text(
        "  1 This software and database is being provided\n"
        "00001740 03 n 01 entity 0 000 | that which exists  \n"
        '00015388 05 n 01 animal 0 000 | a living organism; "animals move"; "a bird is an animal"  \n'
        "00015389 05 n 01 beast 0 000 | a living organism  \n"
        '00015390 05 n 01 pet 0 000 | a tame animal; kept at home; my cat is a pet"  \n'
    )
    (tmp_path / "data.verb").write_text('00001741 29 v 01 breathe 0 000 | draw air; "I breathe"  \n')
    corpus = load_wordnet(tmp_path)
    assert corpus.examples == (
        Example("that which exists", "noun.Tops"),
        Example("a living organism", "noun.animal"),
        Example("a tame animal; kept at home", "noun.animal"),
        Example("draw air", "verb.custom"),
    )


def test_wordnet_missing_files_say_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="apt-get install wordnet-base"):
        load_wordnet(tmp_path)


def test_builtin_datasets_describe_every_label():
    from pgkd.datasets import load_bbc

    corpus = load_bbc()
    assert set(corpus.descriptions) == set(corpus.labels)
    splits = make_splits(corpus, seed=0)
    assert set(splits.descriptions) == set(splits.labels)


def test_duplicate_texts_are_dropped_so_no_text_spans_two_splits(tmp_path) -> None:
    path = tmp_path / "dups.csv"
    rows = [("Same  text here", "a"), ("same text here", "a"), ("clash", "a"), ("clash", "b")]
    rows += [(f"text {i}", "ab"[i % 2]) for i in range(40)]
    path.write_text("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in rows))
    with pytest.warns(UserWarning, match="dropped 3 duplicate.*1 of them with conflicting labels"):
        corpus = load_table(path)
    texts = [e.text for e in corpus.examples]
    assert "clash" not in texts and sum(t.casefold().split() == ["same", "text", "here"] for t in texts) == 1


def test_foldoc_loader() -> None:
    # No skip when dict-foldoc is absent: CI installs it, a missing corpus is a failure.
    with pytest.warns(UserWarning, match="duplicate"):
        corpus = load_corpus("foldoc")
    counts = Counter(e.label for e in corpus.examples)
    assert len(corpus.labels) == 37 and min(counts.values()) >= 40
    assert max(counts.values()) > 10 * min(counts.values()), "the task is meant to be imbalanced"
    assert set(corpus.descriptions) == set(corpus.labels)
    assert not any("{" in e.text or "}" in e.text for e in corpus.examples)


def test_foldoc_parsing_on_a_fake_file(tmp_path: Path) -> None:
    import gzip

    from pgkd.foldoc import load_foldoc

    entries = [
        "ping\n\n   <networking> A {program} to test whether a host\n   can be reached.\n\n   (1997-01-01)",
        "Lisp\n\n   <language, history> A list processing language of the fifties.",
        "Qux\n\n   <jargon> too short",  # under five words: not a text
        "untagged\n\n   A paragraph that opens with no tag at all is skipped.",
    ]
    path = tmp_path / "foldoc.dict.dz"
    with gzip.open(path, "wt") as f:
        f.write("\n\n".join(entries))
    corpus = load_foldoc(path, min_count=1)
    assert corpus.examples == (
        Example("A program to test whether a host can be reached.", "networking"),
        Example("A list processing language of the fifties.", "language"),
    )
    assert corpus.descriptions["networking"] == "computer networks and the internet"
    with pytest.raises(DataError, match="apt-get install dict-foldoc"):
        load_foldoc(tmp_path / "absent.dz")
