"""Fellegi-Sunter EM, u from random pairs, term-frequency adjustment, the override rules, supervised fit."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from linkage.classify import (
    FellegiSunterModel,
    apply_rules,
    estimate_u,
    fit_em,
    fit_supervised,
    probability,
    score,
    term_frequencies,
    term_frequency_adjustment,
)
from linkage.compare import DEFAULT_COMPARISONS, ExactComparison

A = ExactComparison("a", "a", ("different", "same"), column="a")
B = ExactComparison("b", "b", ("different", "same"), column="b")
C = ExactComparison("c", "c", ("different", "same"), column="c")


def synthetic_gammas(n_match: int, n_non: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three comparisons (two binary ones alone do not identify a latent class model);
    matches agree 95%/90%/85% of the time, non-matches 5%/20%/10%."""
    rng = np.random.default_rng(seed)
    m = np.column_stack([rng.random(n_match) < 0.95, rng.random(n_match) < 0.90, rng.random(n_match) < 0.85])
    u = np.column_stack([rng.random(n_non) < 0.05, rng.random(n_non) < 0.20, rng.random(n_non) < 0.10])
    g = np.vstack([m, u]).astype(np.int8)
    return g, np.r_[np.ones(n_match, bool), np.zeros(n_non, bool)]


def test_em_recovers_m_u_and_lambda():
    g, truth = synthetic_gammas(3000, 7000)
    model = fit_em(g, [A, B, C])
    assert model.converged
    assert model.lam == pytest.approx(0.3, abs=0.03)
    assert model.m[0][1] == pytest.approx(0.95, abs=0.03)
    assert model.u[1][1] == pytest.approx(0.20, abs=0.03)
    total, per = score(model, g)
    # Agreeing on both is strong evidence, disagreeing on both strong evidence against.
    all_agree, none_agree = (g == 1).all(axis=1), (g == 0).all(axis=1)
    assert total[all_agree].min() > 0 > total[none_agree].max()
    # Near the best any classifier can do with such weak evidence (about 94% and 97%).
    assert (probability(total) >= 0.5)[truth].mean() > 0.9 and (probability(total) < 0.5)[~truth].mean() > 0.95
    assert per.shape == g.shape


def test_em_with_u_fixed_keeps_u():
    g, _ = synthetic_gammas(3000, 7000)
    u = [np.array([0.9, 0.1]), np.array([0.7, 0.3]), np.array([0.8, 0.2])]
    model = fit_em(g, [A, B, C], u_fixed=u)
    assert np.allclose(model.u[0], u[0]) and model.u_source == "random_pairs"


def test_estimate_u_never_gives_zero():
    g = np.zeros((1000, 2), dtype=np.int8)  # nobody agrees in the random sample
    u = estimate_u(g, [A, B], n_pairs_total=1e6)
    assert all(x[1] > 0 for x in u) and all(abs(x.sum() - 1) < 1e-9 for x in u)


def test_null_levels_weigh_nothing():
    model = FellegiSunterModel(["a", "b"], [2, 2], [np.array([0.1, 0.9])] * 2, [np.array([0.9, 0.1])] * 2, 0.5)
    total, per = score(model, np.array([[-1, -1], [1, -1]], dtype=np.int8))
    assert total[0] == pytest.approx(0.0)
    assert per[1, 0] == pytest.approx(np.log2(9)) and per[1, 1] == 0
    assert probability(np.array([0.0]))[0] == pytest.approx(0.5)


def test_term_frequency_common_name_weak_rare_name_strong():
    names = ["zhang wei"] * 50 + ["wang fang"] * 30 + [f"x{i}" for i in range(19)] + ["ou yang na na"]
    records = pl.DataFrame({"name_pinyin": names})
    tf = {"name_pinyin": term_frequencies(records, "name_pinyin")}
    pf = pl.DataFrame({"name_pinyin_l": ["zhang wei", "ou yang na na"], "name_pinyin_r": ["zhang wei", "ou yang na na"]})
    name_comp = next(c for c in DEFAULT_COMPARISONS if c.name == "name")
    comps = [name_comp]
    gammas = np.array([[6], [6]], dtype=np.int8)
    adj = term_frequency_adjustment(pf, gammas, comps, tf)
    assert adj[0] < 0 < adj[1]
    # A level that does not say "same value" is never adjusted.
    assert term_frequency_adjustment(pf, np.array([[1], [0]], dtype=np.int8), comps, tf).tolist() == [0, 0]


def _rule_frame(valid_l, valid_r):
    return pl.DataFrame({"id_valid_l": valid_l, "id_valid_r": valid_r})


def test_rules_different_valid_ids_and_id_conflict():
    idx = {c.name: k for k, c in enumerate(DEFAULT_COMPARISONS)}
    g = np.zeros((4, len(DEFAULT_COMPARISONS)), dtype=np.int8)
    # 0: two valid ids that differ (twins): different people whatever else agrees
    g[0, idx["id_number"]], g[0, idx["name"]], g[0, idx["birth_date"]] = 0, 5, 4
    # 1: one valid id, one invalid a digit off: left to the model
    g[1, idx["id_number"]], g[1, idx["name"]], g[1, idx["birth_date"]] = 1, 6, 4
    # 2: same valid id, another name and birth date (a child with a parent's number)
    g[2, idx["id_number"]], g[2, idx["name"]], g[2, idx["birth_date"]] = 2, 2, 0
    # 3: same valid id, same name, birth date a typo apart: the same person
    g[3, idx["id_number"]], g[3, idx["name"]], g[3, idx["birth_date"]] = 2, 6, 2
    rules = apply_rules(_rule_frame([True, True, True, True], [True, False, True, True]), g, list(DEFAULT_COMPARISONS))
    # 3 is decided by the id itself: the same valid id, without conflict.
    assert rules.tolist() == ["different_valid_ids", "", "id_conflict", "same_valid_id"]


def test_supervised_weights_separate_labelled_pairs():
    g, truth = synthetic_gammas(500, 1500, seed=3)
    model = fit_supervised(g, truth, [A, B, C])
    total, _ = score(model, g)
    assert model.kind == "logistic_regression"
    assert total[(g[:, 0] == 1) & (g[:, 1] == 1)].mean() > total[(g[:, 0] == 0) & (g[:, 1] == 0)].mean()
    again = FellegiSunterModel.from_dict(model.to_dict())
    assert np.allclose(score(again, g)[0], total)


def test_rule_different_names_only_for_han_names_without_shared_id():
    idx = {c.name: k for k, c in enumerate(DEFAULT_COMPARISONS)}
    g = np.zeros((3, len(DEFAULT_COMPARISONS)), dtype=np.int8)
    g[:, idx["birth_date"]] = 4
    g[:, idx["phone"]] = 1
    g[:, idx["id_number"]] = [-1, 2, -1]  # 1: the same id overrules the name
    frame = pl.DataFrame({"id_valid_l": [False] * 3, "id_valid_r": [False] * 3,
                          "name_script_l": ["han", "han", "latin"], "name_script_r": ["han", "han", "latin"]})
    assert apply_rules(frame, g, list(DEFAULT_COMPARISONS)).tolist() == ["different_names", "", ""]
    # Close names (董子乐 / 董丽琳) with a different sex: twins of both sexes, also kept apart.
    g[:, idx["name"]] = 2
    g[:, idx["sex"]] = [0, 1, 0]
    g[:, idx["id_number"]] = -1
    assert apply_rules(frame, g, list(DEFAULT_COMPARISONS)).tolist() == ["different_names", "", ""]


def test_parent_id_on_child_record_is_not_her_own():
    idx = {c.name: k for k, c in enumerate(DEFAULT_COMPARISONS)}
    g = np.zeros((1, len(DEFAULT_COMPARISONS)), dtype=np.int8)
    g[0, idx["name"]], g[0, idx["birth_date"]] = 6, 4
    # Both ids valid, but the left one is the parent's (id_own false): no different_valid_ids.
    frame = pl.DataFrame({"id_valid_l": [True], "id_valid_r": [True], "id_own_l": [False], "id_own_r": [True]})
    assert apply_rules(frame, g, list(DEFAULT_COMPARISONS)).tolist() == [""]


def test_disagreement_level_never_weighs_for_a_match():
    # Region in a one-county city: no random pair disagrees, so "different county" has only the
    # smoothing floors for m and u; its ratio must not lift "same county" (every pair) to +8 bits.
    region_m = np.array([0.00109, 0.99781, 0.00109])
    region_u = np.array([4e-06, 0.999993, 4e-06])
    model = FellegiSunterModel(["region"], [3], [region_m], [region_u], 0.5)
    (w,) = model.level_weights()
    assert w[0] <= 0
    assert abs(w[1]) < 0.01
    assert list(w) == sorted(w)
