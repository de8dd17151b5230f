"""Tallies of the encoder passes a library runs, observed at its input embedding."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class PassLog:
    """Shapes of the encoder passes a library runs, seen at its input embedding.

    sentence-transformers calls its backbone's ``forward`` method directly, so hooks
    there never fire; every library calls the word embedding as a module.
    """

    def __init__(self, embedding: Any) -> None:
        self.shapes: list[tuple[int, int]] = []
        self._handle = embedding.register_forward_hook(self._record)

    def _record(self, module: Any, args: Any, output: Any) -> None:
        self.shapes.append((int(output.shape[0]), int(output.shape[1])))

    def take(self) -> list[tuple[int, int]]:
        shapes, self.shapes = self.shapes, []
        return shapes

    def close(self) -> None:
        self._handle.remove()


@dataclass
class PassTally:
    """What a library's encoder computed over some tasks.

    ``batch_tokens`` are positions (rows x padded width) of the passes whose outputs
    became vectors; ``probe_tokens`` those of passes run before them and thrown away
    (FlagEmbedding's batch-size probe, including attempts that ran out of memory).
    """

    passes: int = 0
    probe_passes: int = 0
    batch_tokens: int = 0
    probe_tokens: int = 0

    def add(self, shapes: Sequence[tuple[int, int]], documents: int) -> None:
        """The trailing passes that cover ``documents`` rows once are the real batches."""
        covered, first_batch = 0, len(shapes)
        while first_batch > 0 and covered < documents:
            first_batch -= 1
            covered += shapes[first_batch][0]
        if covered != documents:  # the task failed part-way: count everything as batches
            first_batch = 0
        self.passes += len(shapes)
        self.probe_passes += first_batch
        self.probe_tokens += sum(rows * width for rows, width in shapes[:first_batch])
        self.batch_tokens += sum(rows * width for rows, width in shapes[first_batch:])

    def summary(self, real_tokens: int) -> dict[str, Any]:
        padding = 1.0 - real_tokens / self.batch_tokens if self.batch_tokens else None
        return {
            "padding_fraction": padding,
            "oom_events": None,
            "forward_passes": self.passes,
            "probe_passes": self.probe_passes,
            "probe_tokens": self.probe_tokens,
        }


class ObservedRunner:
    """A library runner whose batches are observed through a :class:`PassLog`."""

    def __init__(self, embedding: Any) -> None:
        self._log = PassLog(embedding)
        self.tally = PassTally()

    def reset_counters(self) -> None:
        self._log.take()
        self.tally = PassTally()

    def counters(self, real_tokens: int) -> dict[str, Any]:
        return self.tally.summary(real_tokens)

    def _settle(self, documents: int) -> None:
        self.tally.add(self._log.take(), documents)

    def close(self) -> None:
        self._log.close()
