"""The live teacher's next job, planned without a broker: a PGKD generation when enough hard
negatives (or a drift) wait, otherwise a batch of low-confidence texts to label.

The mining worker (:class:`consumers.miner.Miner`) feeds a :class:`JobPlanner` with live traffic, asks it
for the next job, runs that job on the teacher and, when the teacher fails, calls the job's
``undo`` to put its work back and waits as long as :func:`pgkd.retry.retry_after` says.

>>> planner = JobPlanner(HardWindow(min_hard=1), label_queue=2, label_batch=8, samples_per_step=32,
...                      prompt_examples=16, target_classes=10)
>>> planner.queue("a"), planner.queue("b"), planner.queue("c")
(False, False, True)
>>> job = planner.next(None)
>>> job.kind, job.batch
('label', ['b', 'c'])
>>> job.undo(); list(planner.to_label)
['b', 'c']
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

from pgkd.continual import Guidance, HardWindow
from pgkd.teacher.request import GenerationRequest, generation_request

T = TypeVar("T")  # a text waiting for its label, kept as the caller's event for provenance


@dataclass(frozen=True)
class Generation:
    """Ask the teacher for new samples: one PGKD ``request`` for the model ``version``."""

    request: GenerationRequest
    version: str
    undo: Callable[[], None]
    kind: ClassVar[str] = "generate"


@dataclass(frozen=True)
class Labelling(Generic[T]):
    """Ask the teacher to label the texts of ``batch``."""

    batch: list[T]
    undo: Callable[[], None]
    kind: ClassVar[str] = "label"


class JobPlanner(Generic[T]):
    """What the teacher is asked next. Misclassified traffic goes into the hard ``window`` and
    low-confidence traffic into a queue of at most ``label_queue`` texts (the oldest goes first); a
    drift asks for a generation aimed at the classes it names. A generation comes first, when one is
    due and the current model is known; ``exclude`` (texts already in the data) filters its answer.
    The other arguments are :func:`~pgkd.teacher.request.generation_request`'s."""

    def __init__(
        self,
        window: HardWindow,
        *,
        label_queue: int,
        label_batch: int,
        samples_per_step: int,
        prompt_examples: int,
        target_classes: int,
        seed: int = 0,
        exclude: Collection[str] = (),
    ) -> None:
        self.window = window
        self.to_label: deque[T] = deque(maxlen=label_queue)
        self.label_batch = label_batch
        self.samples_per_step, self.prompt_examples = samples_per_step, prompt_examples
        self.target_classes, self.seed, self.exclude = target_classes, seed, exclude
        self.drift: tuple[str, ...] | None = None  # the classes of a drift not yet answered
        self.generations = 0

    def queue(self, text: T) -> bool:
        """Queue ``text`` for a label; True when the queue was full and its oldest text was dropped."""
        full = len(self.to_label) == self.to_label.maxlen
        self.to_label.append(text)
        return full

    def drifted(self, classes: Sequence[str]) -> None:
        """Live traffic moved: the next generation is aimed at ``classes`` (none: the weakest)."""
        self.drift = tuple(classes)

    def due(self) -> bool:
        """Whether a generation is due, so that the caller fetches the current model for :meth:`next`."""
        return self.window.ready() or self.drift is not None

    def next(self, model: tuple[str, Guidance] | None) -> Generation | Labelling[T] | None:
        """The next job (a generation needs ``model``: the current version and its guidance), or
        None when there is nothing to ask."""
        if self.due() and model is not None:
            version, guidance = model
            hard, ids = self.window.take()
            drift, self.drift = self.drift, None
            request = generation_request(
                guidance.report,
                guidance.scored,
                live_hard=hard,
                n=self.samples_per_step,
                examples=self.prompt_examples,
                classes=self.target_classes,
                seed=self.seed + self.generations,  # a new draw of examples for each prompt
                source_ids=ids,
                focus=drift or (),
                exclude=self.exclude,
            )
            self.generations += 1

            def undo() -> None:
                for example, event_id in zip(hard, ids, strict=True):
                    self.window.add(example, event_id)
                if drift is not None and self.drift is None:  # a newer drift wins
                    self.drift = drift

            return Generation(request, version, undo)
        if self.to_label:
            batch = [self.to_label.popleft() for _ in range(min(self.label_batch, len(self.to_label)))]
            return Labelling(batch, lambda: self.to_label.extendleft(reversed(batch)))
        return None
