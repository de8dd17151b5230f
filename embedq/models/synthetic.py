"""Model folders with random weights, for tests and capacity planning without a model hub.

A random model has exactly the cost of a trained one of the same shape: a
BGE-M3-shaped folder (XLM-RoBERTa large, 8,194 positions) measures throughput
and memory as the real BGE-M3 would. Tokenizers are trained on the spot from
whatever texts are given, in XLM-R's layout (``<s>``, ``<pad>``, ``</s>``,
``<unk>`` first) or BERT's (``[PAD]``, ``[UNK]``, ``[CLS]``, ``[SEP]``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

TokenizerStyle = Literal["xlm-roberta", "bert"]

_XLMR_SPECIALS = {
    "bos_token": "<s>",
    "pad_token": "<pad>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "cls_token": "<s>",
    "sep_token": "</s>",
    "mask_token": "<mask>",
}
_BERT_SPECIALS = {
    "pad_token": "[PAD]",
    "unk_token": "[UNK]",
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "mask_token": "[MASK]",
}


@dataclass(frozen=True)
class EncoderShape:
    """The architecture of a random encoder."""

    hidden_size: int = 32
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    intermediate_size: int = 64
    max_position_embeddings: int = 514
    vocab_size: int | None = None  # None: the tokenizer's vocabulary

    @classmethod
    def bge_m3(cls) -> EncoderShape:
        """XLM-RoBERTa large as BGE-M3 uses it: 24 layers, hidden 1024, 8,194 positions."""
        return cls(1024, 24, 16, 4096, 8194, 250002)


def train_tokenizer(
    folder: Path, texts: Iterable[str], *, style: TokenizerStyle, vocab_size: int = 2000
) -> None:
    """Train a small tokenizer on ``texts`` and save it, ready for ``AutoTokenizer``."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    trainer: Any
    if style == "xlm-roberta":
        specials = _XLMR_SPECIALS
        tokenizer = Tokenizer(models.Unigram())
        tokenizer.normalizer = normalizers.NFKC()
        # as XLM-R's own tokenizer.json: split on any whitespace, then mark word starts
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace()]
        )
        tokenizer.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(
            vocab_size=vocab_size,
            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
            unk_token="<unk>",
        )
        single, pair = "<s> $A </s>", "<s> $A </s> </s> $B </s>"
    else:
        specials = _BERT_SPECIALS
        tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        )
        single, pair = "[CLS] $A [SEP]", "[CLS] $A:0 [SEP]:0 $B:1 [SEP]:1"
    tokenizer.train_from_iterator(texts, trainer=trainer)
    first, last = specials["cls_token"], specials["sep_token"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=single,
        pair=pair,
        special_tokens=[(t, tokenizer.token_to_id(t)) for t in dict.fromkeys((first, last))],
    )
    # transformers ships this constructor (and from_config below) untyped
    wrapped = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call, unused-ignore]
        tokenizer_object=tokenizer, **specials
    )
    wrapped.save_pretrained(str(folder))


def build_encoder(
    folder: Path,
    texts: Iterable[str],
    *,
    style: TokenizerStyle = "xlm-roberta",
    shape: EncoderShape | None = None,
    m3_heads: bool = True,
    reranker: bool = False,
    seed: int = 0,
) -> Path:
    """A random encoder folder: tokenizer, config, weights, and BGE-M3 heads if asked.

    ``reranker=True`` builds a cross-encoder (one logit) instead of an embedder.
    """
    from transformers import (
        AutoModel,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        BertConfig,
        XLMRobertaConfig,
    )

    shape = shape or EncoderShape()
    folder.mkdir(parents=True, exist_ok=True)
    train_tokenizer(folder, texts, style=style)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    config_class = XLMRobertaConfig if style == "xlm-roberta" else BertConfig
    config = config_class(
        vocab_size=shape.vocab_size or len(tokenizer),
        hidden_size=shape.hidden_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        intermediate_size=shape.intermediate_size,
        max_position_embeddings=shape.max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
    )
    config.num_labels = 1  # a cross-encoder scores with one logit
    torch.manual_seed(seed)
    model_class = AutoModelForSequenceClassification if reranker else AutoModel
    model = model_class.from_config(config)  # type: ignore[no-untyped-call, unused-ignore]
    model.save_pretrained(str(folder))
    if m3_heads and not reranker:
        hidden = shape.hidden_size
        torch.save(torch.nn.Linear(hidden, hidden).state_dict(), folder / "colbert_linear.pt")
        torch.save(torch.nn.Linear(hidden, 1).state_dict(), folder / "sparse_linear.pt")
    return folder
