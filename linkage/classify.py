"""Classification: Fellegi-Sunter weights learned without labels, then the rules models get wrong.

The model: for each comparison k and level l, m = P(level | same person), u = P(level |
different persons); a pair's match weight is log2(lambda / (1 - lambda)) plus the sum of
log2(m / u) over its levels (empty sides weigh nothing). m, u and lambda are learned by
EM over the candidate pairs (a two-class latent model, as recordlinkage's ECM), run over
the distinct comparison vectors with their counts, so a million pairs cost as much as a
few hundred patterns. Where the agreed value is common the weight is adjusted down by
its term frequency (张伟 agreeing is weak evidence, 欧阳娜娜 strong), as Splink does.

With labelled pairs a logistic regression (recordlinkage's LogisticRegressionClassifier)
over the one-hot levels gives the weights instead; the rest is unchanged.

Rules then override the score where a model is reliably wrong:
* ``different_valid_ids``: two valid resident ids that differ (15/18 forms already
  made one), each the record's own, belong to two people. A valid id never sits one typo from another valid id,
  so a one-digit-off pair always has an invalid side and stays with the model.
* ``id_conflict``: one id carried by two people (a child registered with a parent's
  number): same id but different names and a different sex or birth date. Not merged;
  reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from linkage.compare import NULL_LEVEL, Comparison

_EPS = 1e-6
MAX_TF_ADJUSTMENT_BITS = 6.0


@dataclass
class FellegiSunterModel:
    comparisons: list[str]
    levels: list[int]  # number of levels (excluding null) per comparison
    m: list[np.ndarray]
    u: list[np.ndarray]
    lam: float
    iterations: int = 0
    converged: bool = False
    kind: str = "fellegi_sunter_em"
    intercept_bits: float | None = None  # logistic: the intercept, in bits
    # Prior odds for scoring: P(two random records match). With u learned from random pairs
    # the Bayes factors are relative to all pairs, so the prior must be too (Splink's way).
    prior: float | None = None
    u_source: str = "em"

    def level_weights(self) -> list[np.ndarray]:
        """Bayes factors in bits, log2(m / u), per comparison and level."""
        if self.kind == "logistic_regression":
            # m holds 2**coefficient and u ones: the weights are the coefficients themselves.
            return [np.log2(m) for m in self.m]
        raw = [np.log2(np.clip(m, _EPS, 1) / np.clip(u, _EPS, 1)) for m, u in zip(self.m, self.u, strict=True)]
        # Disagreement (level 0) is never evidence for a match. Where no random pair disagrees
        # (a city whose records all name one county) both its m and u are only the smoothing
        # floors, and their ratio came out near +8 bits.
        raw = [np.r_[min(w[0], 0.0), w[1:]] if len(w) else w for w in raw]
        # Levels are ordered from looser to closer agreement; a closer one never counts less
        # (a homophone pair rarely seen in training must not weigh below a Jaro-Winkler one).
        return [np.maximum.accumulate(w) for w in raw]

    def prior_bits(self) -> float:
        if self.intercept_bits is not None:
            return self.intercept_bits
        p = self.prior if self.prior is not None else self.lam
        p = min(max(p, 1e-15), 1 - 1e-15)
        return math.log2(p / (1 - p))

    def to_dict(self) -> dict:
        weights = self.level_weights()
        return {
            "kind": self.kind,
            "lambda": self.lam,
            "prior": self.prior,
            "u_source": self.u_source,
            "prior_weight": self.prior_bits(),
            "iterations": self.iterations,
            "converged": self.converged,
            "m": {c: [float(x) for x in m] for c, m in zip(self.comparisons, self.m, strict=True)},
            "u": {c: [float(x) for x in u] for c, u in zip(self.comparisons, self.u, strict=True)},
            "weights": {c: [float(x) for x in w] for c, w in zip(self.comparisons, weights, strict=True)},
        }

    @classmethod
    def from_dict(cls, d: dict) -> FellegiSunterModel:
        comps = list(d["m"].keys())
        model = cls(
            comparisons=comps,
            levels=[len(d["m"][c]) for c in comps],
            m=[np.asarray(d["m"][c]) for c in comps],
            u=[np.asarray(d["u"][c]) for c in comps],
            lam=float(d["lambda"]),
            iterations=int(d.get("iterations", 0)),
            converged=bool(d.get("converged", False)),
            kind=d.get("kind", "fellegi_sunter_em"),
            prior=d.get("prior"),
            u_source=d.get("u_source", "em"),
        )
        if model.kind == "logistic_regression":
            model.intercept_bits = float(d["prior_weight"])
        return model


def _initial_m(n_levels: int) -> np.ndarray:
    # Matches mostly agree fully: most mass on the top level, the rest decaying downwards.
    m = np.array([0.5**(n_levels - 1 - i) for i in range(n_levels)], dtype=float)
    m[-1] += 2.0
    return m / m.sum()


def _initial_u(n_levels: int) -> np.ndarray:
    u = np.array([0.5 ** (i * 2) for i in range(n_levels)], dtype=float)
    return u / u.sum()


def distinct_patterns(gammas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct comparison vectors and their counts.

    Each row is packed into one integer first (levels are small): a 1-D unique is many
    times faster than numpy's row-wise unique over millions of pairs.
    """
    g = gammas.astype(np.int64) + 1  # null (-1) becomes 0
    base = int(g.max(initial=0)) + 1
    codes = np.zeros(len(g), dtype=np.int64)
    for k in range(g.shape[1]):
        codes = codes * base + g[:, k]
    _, first, counts = np.unique(codes, return_index=True, return_counts=True)
    return gammas[first], counts


def fit_em(
    gammas: np.ndarray,
    comparisons: list[Comparison],
    max_iterations: int = 200,
    tol: float = 1e-7,
    lam0: float = 0.3,
    u_fixed: list[np.ndarray] | None = None,
    u_init: list[np.ndarray] | None = None,
) -> FellegiSunterModel:
    """Learn m, u and lambda by EM over the distinct comparison vectors of the candidate pairs.

    With ``u_fixed`` (u estimated from random pairs, :func:`estimate_u`) only m and lambda
    are learned: where blocking is tight the candidates hold few non-matches, too few to
    learn u from.
    """
    n_comp = gammas.shape[1]
    n_levels = [len(c.levels) for c in comparisons]
    if len(gammas) == 0:
        return FellegiSunterModel(
            [c.name for c in comparisons], n_levels, [_initial_m(k) for k in n_levels],
            [_initial_u(k) for k in n_levels], lam0,
        )
    patterns, counts = distinct_patterns(gammas)
    counts = counts.astype(float)
    m = [_initial_m(k) for k in n_levels]
    start_u = u_fixed if u_fixed is not None else u_init
    u = [np.asarray(x, dtype=float) for x in start_u] if start_u is not None else [_initial_u(k) for k in n_levels]
    lam = lam0
    it = 0
    converged = False
    for it in range(1, max_iterations + 1):  # noqa: B007 - iteration count is reported
        log_m = np.zeros(len(patterns))
        log_u = np.zeros(len(patterns))
        for k in range(n_comp):
            g = patterns[:, k]
            known = g != NULL_LEVEL
            log_m[known] += np.log(np.clip(m[k][g[known]], _EPS, 1))
            log_u[known] += np.log(np.clip(u[k][g[known]], _EPS, 1))
        a = math.log(lam) + log_m
        b = math.log(1 - lam) + log_u
        post = 1.0 / (1.0 + np.exp(np.clip(b - a, -700, 700)))
        wm = post * counts
        wu = (1 - post) * counts
        new_lam = float(wm.sum() / counts.sum())
        delta = abs(new_lam - lam)
        lam = min(max(new_lam, _EPS), 1 - _EPS)
        for k in range(n_comp):
            g = patterns[:, k]
            known = g != NULL_LEVEL
            # Half a pair per level: a level the training pairs never showed keeps a small
            # chance instead of an impossible one (weights of -19 bits for the unseen).
            mk = np.bincount(g[known], weights=wm[known], minlength=n_levels[k]) + 0.5
            uk = np.bincount(g[known], weights=wu[known], minlength=n_levels[k]) + 0.5
            mk, uk = mk / mk.sum(), uk / uk.sum()
            if u_fixed is not None:
                uk = u[k]
            delta = max(delta, float(np.abs(mk - m[k]).max()), float(np.abs(uk - u[k]).max()))
            m[k], u[k] = mk, uk
        if delta < tol:
            converged = True
            break
    return FellegiSunterModel(
        [c.name for c in comparisons], n_levels, m, u, lam, it, converged,
        u_source="random_pairs" if u_fixed is not None else "em",
    )


@dataclass(frozen=True)
class TrainingSession:
    """EM over the pairs one blocking pass found, learning m of the comparisons it did not block on.

    Inside a block the blocked comparisons agree by construction, so their m cannot be
    learned there; every other comparison behaves, among the block's non-matches, as among
    random pairs, so u fixed from random pairs is right for them (Splink's training by
    blocking rule).
    """

    blocking_pass: str
    blocked: tuple[str, ...]


TRAINING_SESSIONS: tuple[TrainingSession, ...] = (
    TrainingSession("id_number", ("id_number",)),
    TrainingSession("name_pinyin_birth", ("name", "birth_date")),
)
MIN_SESSION_PAIRS = 30


def fit_em_by_sessions(
    gammas: np.ndarray,
    pass_masks: np.ndarray,
    pass_bits: dict[str, int],
    comparisons: list[Comparison],
    u_fixed: list[np.ndarray],
    sessions: tuple[TrainingSession, ...] = TRAINING_SESSIONS,
    max_iterations: int = 200,
) -> tuple[FellegiSunterModel, list[dict]]:
    """m per comparison from the sessions that could learn it (averaged), u from random pairs.

    A comparison no session could learn (no pairs) takes m from EM over all candidates.
    lambda is then learned over all candidates with m and u held.
    """
    names = [c.name for c in comparisons]
    learned: dict[str, list[np.ndarray]] = {n: [] for n in names}
    report = []
    for sess in sessions:
        bit = pass_bits.get(sess.blocking_pass)
        if bit is None:
            continue
        rows = (pass_masks & bit) > 0
        cols = [k for k, n in enumerate(names) if n not in sess.blocked]
        if rows.sum() < MIN_SESSION_PAIRS:
            report.append({"session": sess.blocking_pass, "pairs": int(rows.sum()), "used": False})
            continue
        model = fit_em(
            gammas[rows][:, cols], [comparisons[k] for k in cols], max_iterations=max_iterations,
            u_fixed=[u_fixed[k] for k in cols], lam0=0.5,
        )
        for j, k in enumerate(cols):
            learned[names[k]].append(model.m[j])
        report.append({"session": sess.blocking_pass, "pairs": int(rows.sum()), "used": True,
                       "trained": [names[k] for k in cols], "lambda": model.lam, "iterations": model.iterations})
    fallback = None
    m = []
    for k, n in enumerate(names):
        if learned[n]:
            m.append(np.mean(learned[n], axis=0))
        elif len(gammas) < MIN_SESSION_PAIRS:
            # A handful of pairs teaches EM nothing: matches mostly agree fully (the prior shape).
            m.append(_initial_m(len(comparisons[k].levels)))
        else:
            if fallback is None:
                fallback = fit_em(gammas, comparisons, max_iterations=max_iterations, u_fixed=u_fixed)
            m.append(fallback.m[k])
    lam = _fit_lambda(gammas, m, u_fixed)
    model = FellegiSunterModel(names, [len(c.levels) for c in comparisons], m, [np.asarray(x) for x in u_fixed], lam,
                               iterations=sum(r.get("iterations", 0) for r in report), converged=True,
                               u_source="random_pairs")
    model.kind = "fellegi_sunter_em_sessions"
    return model, report


def _fit_lambda(gammas: np.ndarray, m: list[np.ndarray], u: list[np.ndarray], iterations: int = 100) -> float:
    """The share of matches among the candidates, m and u held fixed."""
    if len(gammas) == 0:
        return 0.5
    patterns, counts = distinct_patterns(gammas)
    log_ratio = np.zeros(len(patterns))
    for k in range(patterns.shape[1]):
        g = patterns[:, k]
        known = g != NULL_LEVEL
        log_ratio[known] += np.log(np.clip(m[k][g[known]], _EPS, 1)) - np.log(np.clip(u[k][g[known]], _EPS, 1))
    lam = 0.5
    for _ in range(iterations):
        odds = lam / (1 - lam)
        post = 1.0 / (1.0 + np.exp(-np.clip(np.log(odds) + log_ratio, -700, 700)))
        new = float((post * counts).sum() / counts.sum())
        new = min(max(new, _EPS), 1 - _EPS)
        if abs(new - lam) < 1e-9:
            return new
        lam = new
    return lam


def estimate_u(gammas: np.ndarray, comparisons: list[Comparison], n_pairs_total: float) -> list[np.ndarray]:
    """u per comparison and level from the comparison vectors of random record pairs.

    Random pairs are all but never matches. A level never seen in the sample gets half a
    pair's worth (and never less than one chance in all pairs), so its weight stays finite.
    """
    u = []
    for k, c in enumerate(comparisons):
        g = gammas[:, k]
        known = g[g != NULL_LEVEL]
        counts = np.bincount(known, minlength=len(c.levels)).astype(float)
        floor = max(0.5 / max(len(known), 1), 1.0 / max(n_pairs_total, 1.0))
        uk = counts / max(counts.sum(), 1.0)
        uk = np.where(counts == 0, floor, uk)
        u.append(uk / uk.sum())
    return u


def fit_supervised(
    gammas: np.ndarray, labels: np.ndarray, comparisons: list[Comparison]
) -> FellegiSunterModel:
    """Weights from labelled pairs: recordlinkage's LogisticRegressionClassifier over one-hot levels.

    The coefficients (nats) are turned into per-level weights in bits, with the first level
    of each comparison as reference, so scoring and explain work as for the EM model.
    """
    import pandas as pd
    import recordlinkage

    n_levels = [len(c.levels) for c in comparisons]
    cols = {}
    for k, c in enumerate(comparisons):
        for lvl in range(n_levels[k]):
            cols[f"{c.name}={lvl}"] = (gammas[:, k] == lvl).astype(np.int8)
    features = pd.DataFrame(cols, index=pd.MultiIndex.from_arrays([np.arange(len(gammas)), np.arange(len(gammas))]))
    match_index = features.index[labels.astype(bool)]
    clf = recordlinkage.LogisticRegressionClassifier()
    clf.fit(features, match_index)
    coef = np.asarray(clf.coefficients).ravel() / math.log(2)
    intercept = float(np.asarray(clf.intercept).ravel()[0]) / math.log(2)
    weights, pos = [], 0
    for k in range(len(comparisons)):
        weights.append(coef[pos : pos + n_levels[k]])
        pos += n_levels[k]
    # Stored as m = 2**weight, u = 1 (not probabilities; the kind says so) so one scorer serves both.
    u = [np.full(n, 1.0) for n in n_levels]
    m = [np.power(2.0, w) for w in weights]
    lam = float(labels.mean()) if len(labels) else 0.5
    model = FellegiSunterModel([c.name for c in comparisons], n_levels, m, u, lam, 0, True, "logistic_regression")
    model.intercept_bits = intercept
    return model


def term_frequency_adjustment(
    pf: pl.DataFrame,
    gammas: np.ndarray,
    comparisons: list[Comparison],
    tf_tables: dict[str, pl.DataFrame],
    expected_tf: dict[str, float] | None = None,
) -> np.ndarray:
    """Bits added to each pair's weight for how common the agreed value is.

    For a level that says the value agrees, the average chance that two random records
    share a value, sum(f_v^2), is what u assumed; the actual chance for this value is f_v.
    The adjustment log2(sum(f^2) / f_v) is negative for 张伟, positive for 欧阳娜娜, capped
    at +/- MAX_TF_ADJUSTMENT_BITS so one name never outweighs an identity number.
    """
    adj = np.zeros(len(pf))
    for k, c in enumerate(comparisons):
        if not c.tf_levels or c.tf_column is None or c.tf_column not in tf_tables:
            continue
        table = tf_tables[c.tf_column]  # value, tf
        # explain passes only the two records' values, with the run's sum(f^2) from the model.
        if expected_tf is not None and c.tf_column in expected_tf:
            expected = float(expected_tf[c.tf_column])
        else:
            expected = float((table["tf"] ** 2).sum())
        if expected <= 0:
            continue
        in_levels = np.isin(gammas[:, k], list(c.tf_levels))
        if not in_levels.any():
            continue
        tf_l = pf.select(pl.col(f"{c.tf_column}_l").alias("value")).join(table, on="value", how="left")["tf"]
        tf_r = pf.select(pl.col(f"{c.tf_column}_r").alias("value")).join(table, on="value", how="left")["tf"]
        tf = np.maximum(tf_l.fill_null(0).to_numpy(), tf_r.fill_null(0).to_numpy())
        with np.errstate(divide="ignore"):
            bits = np.where(tf > 0, np.log2(expected / np.where(tf > 0, tf, 1)), 0.0)
        adj += np.where(in_levels, np.clip(bits, -MAX_TF_ADJUSTMENT_BITS, MAX_TF_ADJUSTMENT_BITS), 0.0)
    return adj


def term_frequencies(records: pl.DataFrame, column: str) -> pl.DataFrame:
    """value, tf: the share of records (with the field filled) holding each value."""
    vals = records.select(pl.col(column).alias("value")).drop_nulls()
    if len(vals) == 0:
        return pl.DataFrame({"value": [], "tf": []}, schema={"value": pl.String, "tf": pl.Float64})
    return vals.group_by("value").len().select("value", (pl.col("len") / len(vals)).alias("tf"))


def score(model: FellegiSunterModel, gammas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pair: total match weight (bits, prior included) and the per-comparison weights."""
    weights = model.level_weights()
    per = np.zeros(gammas.shape, dtype=float)
    for k, w in enumerate(weights):
        g = gammas[:, k]
        known = g != NULL_LEVEL
        per[known, k] = w[g[known]]
    total = model.prior_bits() + per.sum(axis=1)
    return total, per


def probability(weight: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.power(2.0, -np.clip(weight, -1000, 1000)))


SAME_VALID_ID = "same_valid_id"
# Rules that keep two records apart; SAME_VALID_ID is the one rule that joins them.
VETO_RULES = ("different_valid_ids", "id_conflict", "different_names")


def decide(prob: np.ndarray, rule: np.ndarray, threshold: float) -> np.ndarray:
    """Match when a rule says so, or when no rule objects and the probability reaches the threshold."""
    return (rule == SAME_VALID_ID) | ((prob >= threshold) & (rule == ""))


def apply_rules(pf: pl.DataFrame, gammas: np.ndarray, comparisons: list[Comparison]) -> np.ndarray:
    """Rule that overrides the model, per pair: '' (none), a veto (VETO_RULES) or SAME_VALID_ID."""
    idx = {c.name: k for k, c in enumerate(comparisons)}
    g_id = gammas[:, idx["id_number"]]
    g_name = gammas[:, idx["name"]]
    name_levels = list(comparisons[idx["name"]].levels)
    # Levels up to this one are only "close" (Jaro-Winkler, a shared given name), not the same name.
    close_only = name_levels.index("pinyin Jaro-Winkler >= 0.94")
    loose = name_levels.index("pinyin Jaro-Winkler >= 0.88")
    g_birth = gammas[:, idx["birth_date"]]
    g_sex = gammas[:, idx["sex"]]
    # Own valid ids only: a child's record carrying a parent's number must still reach the child.
    own = "id_own" if "id_own_l" in pf.columns else "id_valid"
    both_valid = (pf[f"{own}_l"].fill_null(False) & pf[f"{own}_r"].fill_null(False)).to_numpy()
    rule = np.full(len(pf), "", dtype=object)
    rule[both_valid & (g_id != 2)] = "different_valid_ids"
    # Names that are not the same name in any reading nor one slip apart (level <= 1).
    names_differ = (g_name >= 0) & (g_name <= loose)
    # A birth date that is not the same date, nor a swap or a one-component typo of it.
    birth_differs = (g_birth >= 0) & (g_birth <= 1)
    sex_differs = g_sex == 0
    # Only a valid resident id is vouched to name one person; other numbers stay with the model.
    valid_shared = (pf["id_valid_l"].fill_null(False) | pf["id_valid_r"].fill_null(False)).to_numpy()
    rule[(g_id == 2) & valid_shared & names_differ & (birth_differs | sex_differs)] = "id_conflict"
    # Names with nothing in common (level 0) and no shared id: household members (twins
    # above all) agree on birth date, address, phone, all of them evidence that moves
    # together and outweighs the one field that tells them apart. Only an id (the same, or
    # one slip apart) may overrule the name.
    # The converse of different_valid_ids: one valid id, the record's own, shared without
    # conflict is one person, whatever slips the names carry (吕博 / 吕颖).
    own_any = (pf[f"{own}_l"].fill_null(False) | pf[f"{own}_r"].fill_null(False)).to_numpy()
    rule[(rule == "") & (g_id == 2) & own_any] = SAME_VALID_ID
    if "name_script_l" in pf.columns:
        # Han names only: a romanized name's parts are reordered, dropped and misspelt far
        # more often (FEBRL), and two han names with nothing in common are two people.
        both_han = ((pf["name_script_l"] == "han") & (pf["name_script_r"] == "han")).fill_null(False).to_numpy()
        # A different sex with a name that is only close (董子乐 / 董丽琳, twins) is the same case.
        differ = (g_name == 0) | ((g_name >= 0) & (g_name <= close_only) & sex_differs)
        rule[(rule == "") & both_han & differ & (g_id <= 0)] = "different_names"
    return rule
