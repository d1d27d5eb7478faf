"""Regurgitation: a draft copied word for word from the anchor, evidence or seed is rejected; new text passes."""

from __future__ import annotations

import pytest

from fac.tools.quality.regurgitation import MAX_COPIED_SHARE, CopyIndex, regurgitation_problem

ANCHOR = ["Cute ass niggah. http://t.co/h0SQoPTYfX",
          "@passIt2Liv Hit a bitch it's not like you can see the bruises",
          "RT @user: these hoes be acting like they run the whole damn city every single night"]


@pytest.mark.parametrize("draft", [
    "Cute ass niggah. http://",  # the verbatim evidence span
    "Hit a bitch it's not like you can see the bruises",  # a word-for-word substring of an anchor tweet
    "HIT A BITCH -- it's not like you can see the bruises!!",  # case, punctuation and spacing do not hide it
    "these hoes be acting like they run the whole damn city every single night lol",
])
def test_copies_of_anchor_texts_are_rejected(draft: str) -> None:
    copy = CopyIndex(ANCHOR).copy(draft)
    assert copy.share >= MAX_COPIED_SHARE
    problem = regurgitation_problem(copy, MAX_COPIED_SHARE)
    assert problem is not None and problem.startswith("regurgitation:")
    assert f"threshold {MAX_COPIED_SHARE:.2f}" in problem


def test_a_new_text_sharing_a_few_words_passes() -> None:
    index = CopyIndex(ANCHOR)
    copy = index.copy("nobody can see the bruises you leave on my heart, you heartless clown")
    assert copy.share < MAX_COPIED_SHARE and regurgitation_problem(copy, MAX_COPIED_SHARE) is None
    assert index.copy("you are a clown and everyone knows it").share == 0.0


def test_share_counts_the_words_inside_copied_runs_and_the_longest_run() -> None:
    index = CopyIndex(["one two three four five six seven eight nine ten"], ngram=4)
    copy = index.copy("one two three four alpha beta gamma delta")  # 4 of 8 words copied
    assert copy.share == pytest.approx(0.5) and copy.longest == 4 and copy.n_words == 8


def test_drafts_too_short_to_judge_are_not_rejected() -> None:
    copy = CopyIndex(ANCHOR).copy("Cute ass")
    assert copy.share == 0.0 and regurgitation_problem(copy, MAX_COPIED_SHARE) is None


def test_bad_orders_are_refused() -> None:
    with pytest.raises(ValueError, match="min_words"):
        CopyIndex([], ngram=2, min_words=3)
