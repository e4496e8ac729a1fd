"""Every topic of the system, named once. Services and producers take names from :class:`Topics`.

A deployment (or a test) picks a ``namespace``; the topics are ``<namespace>.<name>``, so several
systems or test runs can share one cluster without seeing each other's events.

Data flow::

    producers --requests--> serving --predictions--> feedback join <--feedback-- producers
                               |                          |
                               +---------hard-------------+  (low confidence; misclassified)
                                          |
                                        mining --samples--> trainer --model-updates--> serving
    any service --dead-letter--> (operators)

Each input topic has one *owner*: the service that dead-letters its bad records. Another service
that reads the topic too (the feedback join reads ``requests``) skips a bad record and counts it,
so an operator sees one dead letter per bad record, not one per reader.
"""

from __future__ import annotations

from dataclasses import dataclass

from streams import events


@dataclass(frozen=True)
class TopicSpec:
    """One topic: its short name, what it carries, and how it is laid out."""

    name: str
    event: type[events.Event]
    doc: str
    partitions: int | None = None  # None: the deployment's default
    keyed_by: str = "id"
    compact: bool = False  # keep the latest record per key forever instead of a retention window
    owner: str | None = None  # the service that dead-letters a bad record of this topic


SPECS: tuple[TopicSpec, ...] = (
    TopicSpec("requests", events.Request, "texts to classify, from any producer", owner="serving"),
    TopicSpec(
        "predictions", events.Prediction, "one verdict per request, with the model version", owner="feedback"
    ),
    TopicSpec("feedback", events.Feedback, "delayed ground truth for some requests", owner="feedback"),
    TopicSpec(
        "hard", events.HardEvent, "low-confidence and misclassified requests, for mining", owner="mining"
    ),
    TopicSpec(
        "samples", events.Sample, "new training examples with provenance", keyed_by="key", owner="trainer"
    ),
    # One partition: every serving worker reads all of it, and order decides which model is current.
    # Compacted, so the current model is still announced after a quiet week.
    TopicSpec(
        "model-updates", events.ModelUpdate, "the model to serve (last wins)", 1, "version", True, "serving"
    ),
    TopicSpec(
        "drift",
        events.DriftEvent,
        "what moved in live traffic, and for which classes",
        1,
        "model_version",
        owner="mining",
    ),
    TopicSpec("dead-letter", events.DeadLetter, "records a service could not process, and why", 1, "topic"),
)


@dataclass(frozen=True)
class Topics:
    """Topic names of one deployment.

    >>> Topics("pgkd").requests
    'pgkd.requests'
    """

    namespace: str = "pgkd"

    def name(self, short: str) -> str:
        if short not in {s.name for s in SPECS}:
            raise KeyError(f"unknown topic {short!r}")
        return f"{self.namespace}.{short}"

    @property
    def requests(self) -> str:
        return self.name("requests")

    @property
    def predictions(self) -> str:
        return self.name("predictions")

    @property
    def feedback(self) -> str:
        return self.name("feedback")

    @property
    def hard(self) -> str:
        return self.name("hard")

    @property
    def samples(self) -> str:
        return self.name("samples")

    @property
    def model_updates(self) -> str:
        return self.name("model-updates")

    @property
    def drift(self) -> str:
        return self.name("drift")

    @property
    def dead_letter(self) -> str:
        return self.name("dead-letter")

    def layout(self, default_partitions: int) -> dict[str, int]:
        """Topic name -> partition count."""
        return {self.name(s.name): s.partitions or default_partitions for s in SPECS}

    def owns(self, service: str, name: str) -> bool:
        """Whether ``service`` dead-letters the bad records of topic ``name``.

        >>> Topics("x").owns("feedback", "x.requests"), Topics("x").owns("serving", "x.requests")
        (False, True)
        """
        return self.spec(name).owner == service

    def spec(self, name: str) -> TopicSpec:
        """The spec of a full topic name of this deployment."""
        return next(s for s in SPECS if self.name(s.name) == name)
