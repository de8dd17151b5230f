import random

import pytest
from transformers import AutoTokenizer

from embedq.models.tokens import SpecialTokens, TokenizedText, make_windows, tokenize, window_spans


def plain(num_tokens: int, word_starts: list[bool] | None = None) -> TokenizedText:
    return TokenizedText(ids=list(range(num_tokens)), offsets=None, word_starts=word_starts)


@pytest.mark.parametrize(
    ("num_tokens", "width", "overlap", "expected"),
    [
        (5, 10, 2, [(0, 5)]),
        (10, 10, 2, [(0, 10)]),
        (11, 10, 2, [(0, 10), (8, 11)]),
        (26, 10, 2, [(0, 10), (8, 18), (16, 26)]),
    ],
)
def test_window_spans_without_word_information(num_tokens, width, overlap, expected):
    assert window_spans(plain(num_tokens), width, overlap) == expected


def test_windows_cover_every_token_and_never_exceed_the_width():
    rng = random.Random(0)
    for num_tokens in range(1, 300, 7):
        starts = [i == 0 or rng.random() < 0.4 for i in range(num_tokens)]
        spans = window_spans(plain(num_tokens, starts), 16, 3)
        covered = set()
        for start, end in spans:
            assert 0 < end - start <= 16
            covered.update(range(start, end))
        assert covered == set(range(num_tokens))
        assert spans[-1][1] == num_tokens


def test_windows_do_not_cut_words():
    # words of three tokens: a cut inside one is never needed
    starts = [i % 3 == 0 for i in range(100)]
    for start, end in window_spans(plain(100, starts), 16, 4):
        assert start % 3 == 0
        assert end % 3 == 0 or end == 100


def test_a_word_longer_than_a_window_is_cut_inside():
    starts = [i in (0, 5) for i in range(60)]  # one 55-token word
    spans = window_spans(plain(60, starts), 16, 4)
    assert spans[0] == (0, 16)  # no boundary in the back half: cut mid-word
    assert {t for s, e in spans for t in range(s, e)} == set(range(60))


@pytest.mark.parametrize("style", ["xlm-roberta", "bert"])
def test_special_tokens_match_the_tokenizer(build_model, style):
    tokenizer = AutoTokenizer.from_pretrained(str(build_model(style=style)))
    special = SpecialTokens.learn(tokenizer)
    text, other = "the cell divides", "protein folding matters"
    content = tokenizer(text, add_special_tokens=False)["input_ids"]
    second = tokenizer(other, add_special_tokens=False)["input_ids"]
    assert special.wrap(content) == tokenizer(text)["input_ids"]
    ids, _ = special.wrap_pair(content, second)
    assert ids == tokenizer(text, other)["input_ids"]


def test_pair_token_types_follow_bert(minilm_path):
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path))
    special = SpecialTokens.learn(tokenizer)
    first = tokenizer("a query", add_special_tokens=False)["input_ids"]
    second = tokenizer("some passage text", add_special_tokens=False)["input_ids"]
    expected = tokenizer("a query", "some passage text")
    assert special.wrap_pair(first, second) == (
        expected["input_ids"],
        expected["token_type_ids"],
    )


def test_windows_carry_character_spans(build_model, scifact_texts):
    tokenizer = AutoTokenizer.from_pretrained(str(build_model(style="xlm-roberta")))
    special = SpecialTokens.learn(tokenizer)
    text = scifact_texts[0]
    tokenized = tokenize(tokenizer, [text], truncate_to=None)[0]
    offsets = tokenized.offsets
    windows = make_windows(7, tokenized, special=special, width=20, overlap=4)
    assert len(windows) > 2
    assert [w.chunk_index for w in windows] == list(range(len(windows)))
    assert all(w.text_index == 7 and w.length <= 20 + special.single_count for w in windows)
    assert windows[0].start == offsets[0][0]
    assert windows[-1].end == offsets[-1][1]
    for window in windows:
        assert window.input_ids[: len(special.single_prefix)] == list(special.single_prefix)
        assert text[window.start : window.end].strip()
