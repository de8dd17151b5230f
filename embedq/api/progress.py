"""A progress bar over a job's documents, with rate and time left, for a terminal."""

from __future__ import annotations

from typing import Any

from embedq import jobs


class ProgressBar:
    def __init__(self, *, enabled: bool = True) -> None:
        self._bar: Any = None
        self._enabled = enabled

    def update(self, view: jobs.JobView) -> None:
        if not self._enabled:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=view.documents_total, unit="doc", desc=view.collection)
        ended = view.documents_ended
        self._bar.total = max(view.documents_total, ended)
        self._bar.n = ended
        self._bar.set_postfix(status=str(view.status), failed=view.documents_failed, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
