"""build-data on rows that every rule drops fails with the rules, their counts and the settings to try."""

import pytest

from data.empty_output import EmptyOutput, check_not_empty


def card(pairs: int, cross: int | None, sft: int, drops: dict[str, int]) -> dict:
    splits = {"pairs": {"train": pairs, "validation": 0, "test": 0}, "sft": {"train": sft, "validation": 0, "test": 0}}
    if cross is not None:
        splits["pairs_cross_post"] = {"train": cross, "validation": 0, "test": 0}
    return {"splits": splits, "drops": drops, "records": {"posts": 40, "comments": 3}}


def test_nothing_kept_is_an_error_naming_the_rules_and_keys():
    drops = {"same_post/post_fewer_than_2_comments": 38, "comments/submitter": 3, "sft/no_author_tldr": 40}
    with pytest.raises(EmptyOutput) as err:
        check_not_empty(card(0, None, 0, drops), sft_enabled=True)
    msg = str(err.value)
    assert "0 preference pairs" in msg and "40 posts" in msg and "0 SFT rows" in msg
    assert "same_post/post_fewer_than_2_comments 38" in msg and "data.pairs.same_post" in msg
    assert "sft/no_author_tldr 40" in msg and "data.sft.min_completion_tokens" in msg
    assert "cross_post.enabled=true" in msg


def test_one_empty_kind_is_a_warning():
    drops = {"same_post/post_fewer_than_2_comments": 38, "sft/no_author_tldr": 40}
    (only,) = check_not_empty(card(0, None, 12, drops), sft_enabled=True)
    assert only.startswith("build-data produced 0 preference pairs") and "SFT rows" not in only
    (only,) = check_not_empty(card(5, None, 0, drops), sft_enabled=True)
    assert only.startswith("build-data produced 0 SFT rows")
    assert check_not_empty(card(5, None, 0, drops), sft_enabled=False) == []
    with pytest.raises(EmptyOutput):  # SFT off and no pairs: nothing kept
        check_not_empty(card(0, None, 0, drops), sft_enabled=False)


def test_cross_post_pairs_count_as_pairs():
    assert check_not_empty(card(0, 7, 3, {}), sft_enabled=True) == []
