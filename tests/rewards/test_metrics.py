"""The answer metrics, definition by definition, under both normalisation profiles."""

from __future__ import annotations

import pytest

from rewards.metrics import (
    PROFILES,
    cover_exact_match,
    exact_match,
    f1_score,
    normalize_answer,
)

# ---------------------------------------------------------------- normalisation


@pytest.mark.parametrize(
    ("text", "squad", "r1searcher"),
    [
        ("The Eiffel Tower", "eiffel tower", "eiffel tower"),
        ("a cat and AN owl", "cat and owl", "cat and owl"),
        ("  spaced \t out\n text ", "spaced out text", "spaced out text"),
        ("U.S. Route 22", "us route 22", "u s route 22"),
        ("Rock 'n' Roll", "rock n roll", "rock n roll"),
        ("8-acre lake", "8acre lake", "8 acre lake"),
        ("New_York_City", "newyorkcity", "new york city"),
        ("‘quoted’ word", "‘quoted’ word", "quoted word"),
        ("caf´e", "caf´e", "caf e"),
        ("`tick`", "tick", "tick"),
        ("theatre", "theatre", "theatre"),  # articles are whole words only
        ("A", "", ""),
    ],
)
def test_normalize_answer_by_profile(text, squad, r1searcher):
    assert normalize_answer(text) == squad
    assert normalize_answer(text, "squad") == squad
    assert normalize_answer(text, "r1searcher") == r1searcher


def test_articles_are_dropped_after_punctuation():
    # "the." loses its dot first, then "the" is an article (squad order: punc, then articles).
    assert normalize_answer("the. end") == "end"
    # R1-Searcher: "x-a-y" becomes "x a y", and the freed "a" is an article.
    assert normalize_answer("x-a-y", "r1searcher") == "x y"
    assert normalize_answer("x-a-y", "squad") == "xay"


def test_true_false_map_only_as_exact_strings_in_r1searcher():
    assert normalize_answer("True", "r1searcher") == "yes"
    assert normalize_answer("False", "r1searcher") == "no"
    assert normalize_answer("true", "r1searcher") == "true"
    assert normalize_answer(" True", "r1searcher") == "true"
    assert normalize_answer("True", "squad") == "true"


def test_unknown_profile_names_the_known_ones():
    with pytest.raises(ValueError, match="r1searcher, squad"):
        normalize_answer("x", "nope")
    assert set(PROFILES) == {"squad", "r1searcher"}


# ---------------------------------------------------------------- exact match


def test_exact_match_ignores_case_articles_punctuation_whitespace():
    assert exact_match("the  Eiffel tower!", "Eiffel Tower") == 1.0
    assert exact_match("Eiffel", "Eiffel Tower") == 0.0


def test_exact_match_takes_the_best_gold():
    assert exact_match("NYC", ["New York City", "nyc"]) == 1.0
    assert exact_match("Boston", ["New York City", "nyc"]) == 0.0
    assert exact_match("anything", []) == 0.0


def test_exact_match_profiles_differ_on_deleted_vs_spaced_punctuation():
    assert exact_match("US Route 22", "U.S. Route 22", "squad") == 1.0
    assert exact_match("US Route 22", "U.S. Route 22", "r1searcher") == 0.0
    assert exact_match("u s route 22", "U.S. Route 22", "r1searcher") == 1.0


def test_exact_match_true_false_in_r1searcher():
    assert exact_match("True", "yes", "r1searcher") == 1.0
    assert exact_match("yes", "True", "r1searcher") == 1.0
    assert exact_match("True", "yes", "squad") == 0.0


# ---------------------------------------------------------------- cover exact match


def test_cover_em_needs_every_gold_token_in_any_order():
    assert cover_exact_match("It is the Tower Eiffel in Paris.", "Eiffel Tower") == 1.0
    assert cover_exact_match("the Eiffel", "Eiffel Tower") == 0.0


def test_cover_em_matches_whole_tokens_not_substrings():
    assert cover_exact_match("Parisian cafes", "Paris") == 0.0
    assert cover_exact_match("Paris, France", "Paris") == 1.0


def test_cover_em_real_case_where_profiles_differ():
    # From the released stage_1.jsonl: the gold is "an 8 acre lake".
    pred = "the resort which replaced the Dunes is the 8-acre lake of the Bellagio."
    assert cover_exact_match(pred, "an 8 acre lake", "r1searcher") == 1.0
    assert cover_exact_match(pred, "an 8 acre lake", "squad") == 0.0


def test_cover_em_empty_gold_is_covered_only_by_empty_prediction():
    assert cover_exact_match("", "the") == 1.0
    assert cover_exact_match("something", "the") == 0.0


def test_cover_em_best_over_golds_and_implied_by_em():
    assert cover_exact_match("born in Ulm", ["Munich", "Ulm"]) == 1.0
    for pred, gold in [("Ulm", "Ulm"), ("the Ulm.", "ulm"), ("a b", "b a")]:
        assert exact_match(pred, gold) <= cover_exact_match(pred, gold)


# ---------------------------------------------------------------- F1


def test_f1_token_overlap():
    # pred "eiffel tower paris" vs gold "eiffel tower": p = 2/3, r = 1 -> F1 = 0.8.
    assert f1_score("The Eiffel Tower, Paris", "Eiffel Tower") == pytest.approx(0.8)
    assert f1_score("Eiffel Tower", "Eiffel Tower") == 1.0
    assert f1_score("Louvre", "Eiffel Tower") == 0.0


def test_f1_counts_repeated_tokens_as_a_bag():
    # pred "new new york" vs gold "new york": common = {new: 1, york: 1} -> p = 2/3, r = 1.
    assert f1_score("new new york", "New York") == pytest.approx(0.8)


@pytest.mark.parametrize("profile", ["squad", "r1searcher"])
def test_f1_yes_no_noanswer_must_match_exactly(profile):
    assert f1_score("yes", "yes") == 1.0
    assert f1_score("yes it is", "yes", profile) == 0.0  # gold is yes, pred differs
    assert f1_score("yes", "yes sir", profile) == 0.0  # pred is yes, gold differs
    assert f1_score("no", "no way", profile) == 0.0
    assert f1_score("noanswer", "no answer given", profile) == 0.0
    assert f1_score("No.", "no", profile) == 1.0


def test_f1_true_false_only_in_r1searcher():
    assert f1_score("False", "no", "r1searcher") == 1.0
    assert f1_score("False", "no", "squad") == 0.0


def test_f1_empty_sides_score_zero():
    assert f1_score("", "Paris") == 0.0
    assert f1_score("the", "Paris") == 0.0
    assert f1_score("", "") == 0.0  # SQuAD v1.1 / HotpotQA: no common tokens -> 0


def test_f1_best_over_golds():
    golds = ["Barack Obama", "Obama"]
    assert f1_score("Obama", golds) == 1.0
    assert f1_score("President Obama", golds) == pytest.approx(max(0.5, 2 / 3))


def test_f1_profiles_differ_on_punctuation():
    # squad: "us route 22" vs "us route 22" -> 1; r1searcher: "us route 22" vs "u s route 22".
    assert f1_score("US Route 22", "U.S. Route 22", "squad") == 1.0
    p, r = 2 / 3, 2 / 4
    assert f1_score("US Route 22", "U.S. Route 22", "r1searcher") == pytest.approx(
        2 * p * r / (p + r)
    )


@pytest.mark.parametrize("metric", [exact_match, cover_exact_match, f1_score])
@pytest.mark.parametrize("profile", ["squad", "r1searcher"])
def test_metrics_return_floats_in_unit_interval(metric, profile):
    for pred, golds in [("a b c", "b"), ("", ["x", ""]), ("x y", ["y x", "z"]), ("?!", "...")]:
        value = metric(pred, golds, profile)
        assert isinstance(value, float)
        assert 0.0 <= value <= 1.0


# ---------------------------------------------------------------- odd inputs (module docstring)

METRICS = (exact_match, cover_exact_match, f1_score)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("profile", ["squad", "r1searcher"])
def test_a_none_prediction_is_no_answer_and_scores_zero(metric, profile):
    assert metric(None, ["Paris"], profile) == 0.0
    assert metric(None, [""], profile) == 0.0  # even where an empty prediction would score 1
    assert metric(None, [], profile) == 0.0


@pytest.mark.parametrize("metric", METRICS)
def test_numbers_compare_as_their_text(metric):
    assert metric(1990, ["1990"]) == 1.0
    assert metric("1990", [1990]) == 1.0
    assert metric("1990", 1990) == 1.0


@pytest.mark.parametrize("metric", METRICS)
def test_none_golds_are_skipped(metric):
    assert metric("Paris", [None, "Paris"]) == 1.0
    assert metric("Paris", [None]) == 0.0


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("odd", [["Paris", "Rome"], {"answer": "Paris"}, object()])
def test_a_non_string_prediction_raises_a_type_error_naming_it(metric, odd):
    with pytest.raises(TypeError, match="the prediction must be a string, got"):
        metric(odd, ["Paris"])


def test_a_nested_gold_list_raises_a_type_error():
    with pytest.raises(TypeError, match="a gold answer must be a string, got list"):
        f1_score("Paris", [["Paris"]])


def test_no_unicode_folding_as_in_the_official_scripts():
    assert exact_match("ﬁsh", ["fish"]) == 0.0  # the ligature is not folded (no NFKC)
    assert exact_match("１９９０", ["1990"]) == 0.0  # nor are full-width digits
