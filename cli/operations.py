"""Operating and inspecting a running system: ``rollback`` and ``release`` of the served model,
``add-class`` to the taxonomy (and ``suggest-classes`` for it), ``versions`` and ``report`` of the
registry, ``replay`` of a dataset's traffic and ``classify`` of one text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.options import ConfigOpt, stream_settings
from pgkd.cli import Opt, app, console, library_errors
from pgkd.errors import PGKDError


@app.command()
def rollback(
    version: Annotated[str, typer.Argument(help="a version in the registry, e.g. v0003")],
    hold: Annotated[
        bool, Opt(help="hold automatic promotion until `pgkd release` (--no-hold lets the trainer go on)")
    ] = True,
    config: ConfigOpt = None,
) -> None:
    """Make an earlier model version current again in the registry and in every serving worker."""
    from consumers.model_updates import rollback as roll_back

    settings = stream_settings(config)
    with library_errors():
        record = roll_back(settings, version, hold=hold)
    console.print(f"rolled back to {record.version} ({record.uri})")
    if hold:
        console.print("automatic promotion is held: run `pgkd release` to let the trainer promote again")


@app.command()
def release(config: ConfigOpt = None) -> None:
    """Let the trainer promote again after a held rollback."""
    from consumers.model_updates import release as release_hold

    settings = stream_settings(config)
    with library_errors():
        hold = release_hold(settings)
    console.print("no hold to lift" if hold is None else f"hold lifted ({hold['reason']})")


@app.command("add-class")
def add_class(
    name: Annotated[str, typer.Argument(help="the new label, e.g. weather")],
    description: Annotated[str, Opt(help="what the class covers, in a sentence (the teachers see it)")],
    example: Annotated[
        list[str] | None, Opt("--example", help="a text of the class (repeat it; 4 at least, with the file)")
    ] = None,
    examples_file: Annotated[Path | None, Opt(help="a UTF-8 file of texts of the class, one a line")] = None,
    config: ConfigOpt = None,
) -> None:
    """Add a class to the live taxonomy. The trainer's next candidate learns it from the examples
    (a quarter of them held out to check it on), and is promoted only if it recognises the held-out
    ones and keeps the old classes' macro-F1; then every serving worker answers with it."""
    import redis

    from pgkd.runner import load_splits
    from pgkd.taxonomy import NewClass, TaxonomyStore
    from streams.connect import redis_client

    settings = stream_settings(config)
    with library_errors():
        texts = list(example or [])
        if examples_file is not None:
            try:
                lines = examples_file.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise PGKDError(f"cannot read {examples_file}: {exc}") from exc
            texts += [line for line in lines if line.strip()]
        new = NewClass.of(name, description, texts)
        store = TaxonomyStore(redis_client(settings), namespace=settings.namespace)
        try:
            store.add(new, load_splits(settings).labels)
        except redis.RedisError as exc:
            raise PGKDError(f"cannot reach Redis (PGKD_REDIS_URL): {exc}") from exc
        train, held_out = new.split()
    console.print(
        f"added {new.name!r}: {len(train)} examples to train on, {len(held_out)} held out; it is promoted "
        f"when its held-out recall reaches {settings.new_class_min_recall:g} and the old classes' "
        f"macro-F1 falls by at most {settings.new_class_max_old_drop:g}"
    )


@app.command("suggest-classes")
def suggest_classes(
    min_size: Annotated[int, Opt(help="texts a cluster needs to be offered")] = 5,
    max_distance: Annotated[float, Opt(help="cosine distance at which clusters stop merging")] = 0.8,
    out: Annotated[Path, Opt(help="folder for one examples file per candidate")] = Path(
        "runs/suggested-classes"
    ),
    config: ConfigOpt = None,
) -> None:
    """Offer clusters of the latest out-of-taxonomy traffic as candidate classes. Nothing is added:
    read a candidate's examples file, keep the texts that belong, and run `pgkd add-class NAME
    --description ... --examples-file FILE`."""
    import redis

    from pgkd.class_suggestions import suggest_classes as clusters_of
    from pgkd.student import Student
    from pgkd.taxonomy import TaxonomyStore
    from streams.connect import redis_client

    settings = stream_settings(config)
    with library_errors():
        try:
            texts = TaxonomyStore(redis_client(settings), namespace=settings.namespace).unknown()
        except redis.RedisError as exc:
            raise PGKDError(f"cannot reach Redis (PGKD_REDIS_URL): {exc}") from exc
        if not texts:
            console.print("no out-of-taxonomy traffic kept yet: nothing to suggest")
            return
        encoder = Student.create(("known", "unknown"), settings.base_model, max_length=settings.max_length)
        found = clusters_of(texts, encoder.embed, min_size=min_size, max_distance=max_distance)
    out.mkdir(parents=True, exist_ok=True)
    table = Table("#", "texts", "keywords", "nearest its centre", "examples file")
    for i, candidate in enumerate(found, 1):
        path = out / f"candidate-{i}.txt"
        path.write_text("\n".join(" ".join(t.split()) for t in candidate.examples) + "\n", encoding="utf-8")
        table.add_row(
            str(i), str(candidate.size), ", ".join(candidate.keywords), candidate.examples[0][:60], str(path)
        )
    console.print(
        f"{len(texts)} out-of-taxonomy texts kept; candidates (clusters of {min_size} or more): {len(found)}"
    )
    if found:
        console.print(table)


@app.command()
def versions(config: ConfigOpt = None) -> None:
    """List the registry's model versions with their metrics and lineage."""
    from streams.connect import registry

    settings = stream_settings(config)
    reg = registry(settings)
    current = reg.current()
    table = Table("version", "parent", "val macro-F1", "test acc", "train size", "teacher $", "note", "")
    for r in reg.versions():
        val, test = r.metric("macro_f1"), r.metric("accuracy", "test")
        table.add_row(
            r.version,
            r.parent_version or "-",
            "-" if val is None else f"{val:.3f}",
            "-" if test is None else f"{test:.3f}",
            str(r.train_size),
            f"{r.teacher_cost_since_parent:.4f}",
            r.note,
            "current" if current and current.version == r.version else "",
        )
    console.print(table)


@app.command()
def report(
    out: Annotated[Path, Opt(help="where to write the PNG")] = Path("runs/history.png"),
    config: ConfigOpt = None,
) -> None:
    """Plot the live system's history from the registry: scores of every version, rejected
    candidates, promotions and the teacher's cumulative cost."""
    import redis

    from pgkd.registry import ModelRegistry
    from pgkd.report import plot_history
    from streams.connect import redis_client

    settings = stream_settings(config)
    try:
        client = redis_client(settings, socket_connect_timeout=2.0)
        client.ping()
    except redis.RedisError:
        client = None  # storage alone still has every version; rejected candidates need Redis
    registry = ModelRegistry(settings.registry_uri, redis=client, namespace=settings.namespace)
    with library_errors():
        records = registry.versions()
        if not records:
            raise PGKDError(f"no model version in {settings.registry_uri} (namespace {settings.namespace})")
        out.parent.mkdir(parents=True, exist_ok=True)
        plot_history(records, registry.decisions(1000), out)
    console.print(f"wrote {out} ({len(records)} versions)")


@app.command()
def replay(
    dataset: Annotated[str | None, Opt(help="bbc, wordnet, foldoc or a CSV/JSONL path")] = None,
    rate: Annotated[float, Opt(help="requests per second (0: as fast as possible)")] = 0.0,
    feedback: Annotated[float, Opt(help="fraction of requests that get delayed ground truth")] = 0.3,
    feedback_delay: Annotated[float, Opt(help="seconds until the ground truth arrives")] = 5.0,
    limit: Annotated[int | None, Opt(help="replay only this many requests")] = None,
    config: ConfigOpt = None,
) -> None:
    """Replay a dataset's traffic pool as requests (and delayed feedback) to a running system."""
    from pgkd.runner import load_splits
    from producers.replay import Replayer
    from streams.connect import producer
    from streams.topics import Topics

    settings = stream_settings(config, dataset=dataset)
    with library_errors():
        splits = load_splits(settings)
        traffic = splits.traffic[:limit] if limit else splits.traffic
        replayer = Replayer(
            producer(settings),
            Topics(settings.namespace),
            rate=rate or None,
            feedback_fraction=feedback,
            feedback_delay=feedback_delay,
            seed=settings.seed,
        )
        report = replayer.run(traffic)
    console.print(
        f"sent {len(report.ids)} requests and {len(report.feedback)} feedbacks in {report.seconds:.1f} s "
        f"({len(report.ids) / report.seconds:.1f}/s)"
    )


@app.command()
def classify(
    text: Annotated[str, typer.Argument(help="the text to classify")],
    timeout: Annotated[float, Opt(help="seconds to wait for the prediction")] = 60.0,
    config: ConfigOpt = None,
) -> None:
    """Publish one request to a running system and print its prediction."""
    from producers.client import classify as send_and_wait

    settings = stream_settings(config)
    try:
        prediction = send_and_wait(settings, text, timeout=timeout)
    except TimeoutError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    console.print_json(prediction.model_dump_json())
