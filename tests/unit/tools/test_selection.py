"""Lazy-greedy max coverage: the greedy choice, its tie-breaks, the stop rules, and brute force agreement."""

from __future__ import annotations

import itertools
import random

import pytest

from fac.tools.errors import ConfigError
from fac.tools.selection import Candidate, select


def _c(scores: dict[int, float], extra: tuple[int, ...] = ()) -> Candidate:
    return Candidate(scores, frozenset(scores) | frozenset(extra))


def test_greedy_takes_the_biggest_gain_first_and_skips_what_the_seed_covers() -> None:
    pool = [_c({1: 1.0}), _c({1: 1.0, 2: 1.0, 3: 1.0}), _c({3: 1.0, 4: 1.0})]
    picks = select(pool, {1, 2, 3, 4}, covered={4}, goal_covered=4)
    assert [p.index for p in picks] == [1]  # covers 1, 2, 3: the goal is met
    assert picks[0].added == (1, 2, 3) and picks[0].covered_after == 4


def test_with_k_the_picks_after_full_coverage_add_features_no_pick_fired_yet() -> None:
    pool = [_c({1: 1.0}), _c({1: 1.0, 2: 1.0}), _c({1: 1.0}, extra=(7, 8)), _c({2: 1.0}, extra=(7, 9))]
    picks = select(pool, {1, 2}, covered=set(), k=3)
    assert [p.index for p in picks] == [1, 2, 3]  # then 2 (two new features), then 3; row 0 adds nothing
    assert [p.added for p in picks] == [(1, 2), (), ()] and picks[-1].covered_after == 2
    assert len(select(pool, {1, 2}, covered=set(), k=10)) == 3  # row 0 adds nothing at all: not picked


def test_ties_go_to_score_mass_then_to_new_features_then_to_the_earlier_row() -> None:
    pool = [_c({1: 1.0}), _c({2: 3.0}), _c({3: 3.0}, extra=(90, 91)), _c({4: 3.0}, extra=(90, 91))]
    order = [p.index for p in select(pool, {1, 2, 3, 4}, set(), k=4)]
    assert order[0] == 2  # mass 3 and two unseen features
    assert order[1:3] == [1, 3]  # mass ties; row 3's extra features are seen now, so row 1 (earlier) first
    assert order[3] == 0


def test_the_goal_stops_as_soon_as_it_is_met() -> None:
    pool = [_c({1: 1.0, 2: 1.0}), _c({3: 1.0}), _c({4: 1.0})]
    picks = select(pool, {1, 2, 3, 4}, set(), goal_covered=3)
    assert len(picks) == 2 and picks[-1].covered_after == 3


@pytest.mark.parametrize(("k", "goal"), [(None, None), (2, 3), (0, None)])
def test_exactly_one_positive_stop_rule_is_required(k: int | None, goal: int | None) -> None:
    with pytest.raises(ConfigError):
        select([_c({1: 1.0})], {1}, set(), k=k, goal_covered=goal)


def test_lazy_greedy_matches_plain_greedy_and_stays_within_1_minus_1_over_e() -> None:
    rng = random.Random(0)
    for _ in range(30):
        task = set(range(12))
        pool = [_c({j: rng.random() for j in rng.sample(sorted(task), rng.randint(1, 4))}) for _ in range(9)]
        lazy = select(pool, task, set(), k=3)
        uncovered, plain = set(task), []
        for _ in range(3):  # plain greedy: recompute every gain every step
            best = max(range(len(pool)), key=lambda i: (len(set(pool[i].task_scores) & uncovered),
                                                        sum(s for j, s in pool[i].task_scores.items()
                                                            if j in uncovered), -i))
            if not set(pool[best].task_scores) & uncovered:
                break
            plain.append(best)
            uncovered -= set(pool[best].task_scores)
        assert [p.covered_after for p in lazy] == [len(task) - len(u) for u in _after(pool, task, plain)]
        optimum = max(len(set().union(*(pool[i].task_scores for i in combo)))
                      for combo in itertools.combinations(range(len(pool)), 3))
        assert lazy[-1].covered_after >= (1 - 1 / 2.718281828) * optimum


def _after(pool: list[Candidate], task: set[int], order: list[int]) -> list[set[int]]:
    uncovered, out = set(task), []
    for i in order:
        uncovered = uncovered - set(pool[i].task_scores)
        out.append(set(uncovered))
    return out
