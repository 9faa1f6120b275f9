"""Statistics v2 kernels: Tango's paired score test and interval, the inverted sign-flip test, power and sample size,
the covariance of sibling drifts, BH and kappa against their references, and a fast calibration by simulation."""
import importlib.util, itertools
from pathlib import Path
import numpy as np
import pytest
from scipy import optimize, stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from sklearn.metrics import cohen_kappa_score
from safedrift_wb.common.errors import UsageError
from safedrift_wb.stats import (paired_binary_test, sign_flip_test, sign_flip_pvalue, TEST_NAME, bh_qvalues, cohen_kappa,
                                min_detectable_effect, plan_sample_size, discordant_probs, sibling_cov, z_value)

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location('calib_cells', ROOT/'bench'/'calib_cells.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


# ---- Tango's score test and interval -------------------------------------------------------------------------------

def _tango_reference(b, c, n, ci_prob=0.95):
    "Independent reference: the constrained MLE by numerical maximisation of the multinomial likelihood, ends by brentq."
    z = stats.norm.ppf(0.5 + ci_prob/2)
    def q21(delta):   # maximise b log(q + delta) + c log q + rest log(1 - 2q - delta) over the feasible q
        lo, hi = max(0.0, -delta) + 1e-13, (1 - delta)/2 - 1e-13
        nll = lambda q: -(b*np.log(q + delta) if b else 0) - (c*np.log(q) if c else 0) - ((n - b - c)*np.log(1 - 2*q - delta) if n - b - c else 0)
        return optimize.minimize_scalar(nll, bounds=(lo, hi), method='bounded', options={'xatol': 1e-14}).x
    T = lambda d: (b - c - n*d)/np.sqrt(n*(2*q21(d) + d*(1 - d)))
    est = (b - c)/n
    lo = -1.0 if est <= -1 + 1e-12 else optimize.brentq(lambda d: T(d) - z, -1 + 1e-9, est if b != c else est - 1e-12, xtol=1e-12)
    hi = 1.0 if est >= 1 - 1e-12 else optimize.brentq(lambda d: T(d) + z, est if b != c else est + 1e-12, 1 - 1e-9, xtol=1e-12)
    return lo, hi


def test_tango_published_example():
    # Fagerland, Lydersen & Laake (2017), chapter 8, Cavo et al. (2012): n12 = 6, n21 = 16, N = 161
    p, lo, hi = paired_binary_test(6, 16, 161)
    assert float(lo) == pytest.approx(-0.1240, abs=5e-5) and float(hi) == pytest.approx(-0.0054, abs=5e-5)
    assert float(p) == pytest.approx(0.033006, abs=5e-7)


@pytest.mark.parametrize('b,c,n', [(6, 16, 161), (1, 7, 21), (0, 0, 20), (3, 0, 20), (0, 5, 12), (10, 10, 40),
                                   (1, 0, 200), (19, 1, 20), (2, 3, 7)])
def test_tango_matches_independent_reference(b, c, n):
    _, lo, hi = paired_binary_test(b, c, n)
    rlo, rhi = _tango_reference(b, c, n)
    assert float(lo) == pytest.approx(rlo, abs=2e-6) and float(hi) == pytest.approx(rhi, abs=2e-6)


def test_tango_pvalue_is_mcnemar_and_agrees_with_interval():
    bb, cc = np.meshgrid(np.arange(0, 26), np.arange(0, 26))
    n = 60
    p, lo, hi = paired_binary_test(bb, cc, n)
    for b, c in [(3, 9), (12, 4), (1, 0), (20, 25)]:
        ref = mcnemar([[0, b], [c, n - b - c]], exact=False, correction=False).pvalue
        assert p[c, b] == pytest.approx(ref, rel=1e-12)
    assert p[0, 0] == 1.0
    assert np.array_equal((lo <= 0) & (0 <= hi), p >= 0.05)
    assert (hi - lo > 0).all() and (lo >= -1).all() and (hi <= 1).all()
    assert np.all((lo <= (bb - cc)/n) & ((bb - cc)/n <= hi))
    # other coverage: agreement at 90%
    p, lo, hi = paired_binary_test(bb, cc, n, ci_prob=0.9)
    assert np.array_equal((lo <= 0) & (0 <= hi), p >= 0.1)


def test_tango_invalid_cells_are_nan():
    p, lo, hi = paired_binary_test([0, 5, 3], [0, 6, 1], [0, 10, 20])
    assert np.isnan([p[0], lo[0], hi[0]]).all() and np.isnan([p[1], lo[1], hi[1]]).all()
    assert np.isfinite([p[2], lo[2], hi[2]]).all()


# ---- sign-flip test and its inverted interval ----------------------------------------------------------------------

def _brute(v, d0, m=None):
    "Two-sided sign-flip p-value of H0: mean = d0 over all 2**k flips of the units (sums v, sizes m)."
    m = np.ones_like(v) if m is None else m
    u = v - d0*m; t = u.sum()
    null = np.array([np.dot(s, u) for s in itertools.product([1, -1], repeat=len(v))])
    return min(1, 2*min((null >= t - 1e-10).mean(), (null <= t + 1e-10).mean()))


def test_sign_flip_exact_matches_brute_force_and_old_pvalue():
    rng = np.random.default_rng(0)
    D = rng.normal(0.5, 1, (9, 8)); D[6:, 2] = np.nan; D[:, 3] = np.round(D[:, 3])
    p, lo, hi = sign_flip_test(D)
    np.testing.assert_allclose(p, sign_flip_pvalue(D), rtol=1e-12)
    for j in range(8):
        v = D[~np.isnan(D[:, j]), j]
        assert _brute(v, 0) == pytest.approx(p[j])
        assert _brute(v, lo[j]) >= 0.05 > _brute(v, lo[j] - 1e-7)
        assert _brute(v, hi[j]) >= 0.05 > _brute(v, hi[j] + 1e-7)
    assert TEST_NAME and callable(sign_flip_pvalue)


def test_sign_flip_clusters_flip_whole_clusters():
    rng = np.random.default_rng(1)
    cl = np.array([0, 0, 1, 1, 1, 2, 3, 3, 4, 5, 5, 6])
    D = rng.normal(0.3, 1, (12, 3)); D[4, 1] = np.nan
    p, lo, hi = sign_flip_test(D, clusters=[f'tmpl{c}' for c in cl])
    for j in range(3):
        ok = ~np.isnan(D[:, j])
        U = np.bincount(cl[ok], D[ok, j]); m = np.bincount(cl[ok]).astype(float)
        assert _brute(U, 0, m) == pytest.approx(p[j])
        assert _brute(U, lo[j], m) >= 0.05 > _brute(U, lo[j] - 1e-7, m)
        assert _brute(U, hi[j], m) >= 0.05 > _brute(U, hi[j] + 1e-7, m)


def test_sign_flip_monte_carlo():
    rng = np.random.default_rng(2)
    D = rng.normal(0.15, 1, (400, 30)); D[:50, 0] = np.nan
    D[:, 1] = 3.0                                            # extreme: p is 2/(B + 1), never 0
    p, lo, hi = sign_flip_test(D, n_resamples=999, rng=5)
    assert p[1] == pytest.approx(2/1000) and (p > 0).all()
    assert np.array_equal((lo <= 0) & (0 <= hi), p >= 0.05)
    t_lo, t_hi = stats.ttest_1samp(D[:, 2:], 0).confidence_interval()
    np.testing.assert_allclose(lo[2:], t_lo, atol=0.02); np.testing.assert_allclose(hi[2:], t_hi, atol=0.02)
    # chunking over cells does not change the answer for the same sign vectors
    small = sign_flip_test(D, n_resamples=999, rng=5, max_bytes=3e4)   # blocks of sign vectors and of cells
    for a, b in zip((p, lo, hi), small): np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)   # BLAS block order
    # the same p-values as counting by hand with those sign vectors
    F = 2*np.random.default_rng(5).integers(0, 2, size=(999, 400), dtype=np.int8).astype(float)
    d = D[:, 5]; T = d.sum(); Ts = T - F @ d
    hand = min(1, 2*min((1 + (Ts >= T).sum()), (1 + (Ts <= T).sum()))/1000)
    assert p[5] == pytest.approx(hand)


def test_sign_flip_edge_cases():
    p, lo, hi = sign_flip_test(np.full((6, 2), np.nan))
    assert np.isnan(p).all() and np.isnan(lo).all()
    p, lo, hi = sign_flip_test(np.zeros((30, 1)), bounds=(-1, 1))
    h = 1 - 0.025**(1/30)
    assert p[0] == 1 and lo[0] == pytest.approx(-h) and hi[0] == pytest.approx(h)
    p, lo, hi = sign_flip_test(np.array([[1.0], [0.5], [0.2]]), bounds=(-1, 1))  # 3 units: never rejects
    assert p[0] == 0.25 and (lo[0], hi[0]) == (-1, 1)
    p, lo, hi = sign_flip_test(np.zeros((30, 2)), bounds=([-1, -np.inf], [1, np.inf]))     # bounds per cell
    assert lo[0] == pytest.approx(-h) and (lo[1], hi[1]) == (0, 0)
    with pytest.raises(UsageError, match='clusters has 3 labels for 4 items'): sign_flip_test(np.zeros((4, 1)), clusters=[0, 1, 2])
    with pytest.raises(UsageError, match=r'D must be \(n_items, n_cells\)'): sign_flip_test(np.zeros(4))


# ---- power and planning --------------------------------------------------------------------------------------------

def test_mde_formula_and_simulated_power():
    assert float(min_detectable_effect(2.0, 64)) == pytest.approx((z_value(0.95) + stats.norm.ppf(0.8))*2/8)
    rng = np.random.default_rng(3)
    n = 60; mde = float(min_detectable_effect(1.0, n))
    p, _, _ = sign_flip_test(rng.normal(mde, 1, (n, 600)), n_resamples=999, rng=4)
    assert 0.72 <= np.mean(p < 0.05) <= 0.86


@pytest.mark.parametrize('base,drift,rho', [(0.3, 0.1, 0.5), (0.9, -0.1, 0.3), (0.5, 0.05, 0.6)])
def test_plan_sample_size_gives_the_power_by_simulation(base, drift, rho):
    n = plan_sample_size(base, drift, rho=rho)
    p10, p01 = discordant_probs(base, drift, rho)
    bc = np.random.default_rng(4).multinomial(n, [p10, p01, 1 - p10 - p01], size=3000)
    p, _, _ = paired_binary_test(bc[:, 0], bc[:, 1], n)
    assert 0.76 <= np.mean(p < 0.05) <= 0.84
    assert plan_sample_size(base, drift, rho=rho, power=0.9) > n


def test_plan_sample_size_errors():
    with pytest.raises(UsageError, match='drift must be non-zero'): plan_sample_size(0.5, 0)
    with pytest.raises(UsageError, match='base_rate must be a number strictly between 0 and 1'): plan_sample_size(1.5, 0.1)
    with pytest.raises(UsageError, match='base_rate \\+ drift'): plan_sample_size(0.95, 0.1)
    with pytest.raises(UsageError, match='power must be'): plan_sample_size(0.5, 0.1, power=80)
    with pytest.raises(UsageError, match='alpha must be'): plan_sample_size(0.5, 0.1, alpha=0)
    with pytest.raises(UsageError, match='rho=0.9 is impossible'): plan_sample_size(0.05, 0.5, rho=0.9)
    with pytest.raises(UsageError, match='drift must be a finite number'): plan_sample_size(0.5, 'big')


# ---- covariance of sibling drifts ----------------------------------------------------------------------------------

def test_sibling_cov_formula_and_planted_truth():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(40, 3)); x[:5, 2] = np.nan
    C = sibling_cov(x, groups=['a', 'a', 'a'])
    ok = ~np.isnan(x[:, 2])
    assert C[0, 0] == pytest.approx(x[:, 0].var(ddof=1)/40)
    e0, e2 = x[:, 0] - x[:, 0].mean(), x[:, 2] - np.nanmean(x[:, 2])
    assert C[0, 2] == pytest.approx((e0[ok]*e2[ok]).sum()/(40*35)*35/34)
    assert np.isnan(sibling_cov(x, groups=['a', 'b', 'a'])[0, 1])
    # planted: derivatives X_j - Y of one base Y, clustered items sharing a cluster effect in Y
    cl = np.repeat(np.arange(20), 4)
    est, means = [], []
    for _ in range(600):
        y = rng.normal(0, 1, 20).repeat(4) + rng.normal(0, 1, 80)
        d = rng.normal(0, 1, (80, 2)) - y[:, None]
        est.append(sibling_cov(d, clusters=cl)); means.append(d.mean(0))
    true_cov = (4*1 + 1)/80          # Var(mean of y): 20 cluster effects of weight 4/80, plus item noise
    emp = np.cov(np.array(means).T)
    assert np.mean([e[0, 1] for e in est]) == pytest.approx(true_cov, rel=0.12)
    assert emp[0, 1] == pytest.approx(true_cov, rel=0.15)
    naive = np.mean([sibling_cov(d)[0, 1] for d in [rng.normal(0, 1, (80, 2)) - (rng.normal(0, 1, 20).repeat(4) + rng.normal(0, 1, 80))[:, None] for _ in range(200)]])
    assert naive < 0.5*true_cov      # ignoring the clusters understates it


# ---- BH and kappa against their references -------------------------------------------------------------------------

def test_bh_qvalues_matches_statsmodels_and_keeps_nan():
    p = np.random.default_rng(6).random((20, 30))**2
    p[3, :5] = np.nan
    q = bh_qvalues(p)
    ok = np.isfinite(p)
    np.testing.assert_allclose(q[ok], multipletests(p[ok], method='fdr_bh')[1], rtol=1e-12)
    assert np.isnan(q[~ok]).all() and q.shape == p.shape
    assert np.isnan(bh_qvalues(np.array([np.nan, np.nan]))).all()


def test_cohen_kappa_matches_sklearn():
    rng = np.random.default_rng(7)
    a = (rng.random((5, 80)) < 0.3).astype(float); b = np.where(rng.random((5, 80)) < 0.8, a, 1 - a)
    a[1, :10] = np.nan
    po, k, n = cohen_kappa(a, b)
    for i in range(5):
        ok = np.isfinite(a[i])
        assert k[i] == pytest.approx(cohen_kappa_score(a[i, ok], b[i, ok], labels=[0, 1]), abs=1e-12)
        assert po[i] == pytest.approx((a[i, ok] == b[i, ok]).mean()) and n[i] == ok.sum()
    assert np.isnan(cohen_kappa(np.ones(4), np.ones(4))[1])          # no chance disagreement: undefined


# ---- calibration by simulation (fast version of bench/calib_cells.py) ----------------------------------------------

@pytest.fixture(scope='module')
def calib():
    return _bench()


def test_calibration_binary(calib):
    rows = calib.binary(fast=True)
    cov = [r['value'] for r in rows if r['quantity'] == 'coverage' and not r['note']]
    assert len(cov) >= 20 and 0.935 <= np.mean(cov) <= 0.965 and min(cov) >= 0.9 and max(cov) <= 0.99
    size = [r['value'] for r in rows if r['quantity'] == 'size' and not r['note']]
    assert 0.03 <= np.mean(size) <= 0.07 and max(size) <= 0.1
    assert all(r['value'] == 0 for r in rows if r['quantity'] == 'zero_width')
    assert all(r['value'] == 1 for r in rows if r['quantity'] == 'ci_test_agreement')
    # the degenerate corners are conservative, never anti-conservative
    assert all(r['value'] >= 0.93 for r in rows if r['quantity'] == 'coverage' and r['note'])


def test_calibration_sign_flip(calib):
    rows = calib.continuous(fast=True) + calib.repeated(fast=True) + calib.clustered(fast=True)
    main = [r for r in rows if 'reference' not in r['note']]
    cov = [r['value'] for r in main if r['quantity'] == 'coverage' and not r['note']]
    assert 0.93 <= np.mean(cov) <= 0.975 and min(cov) >= 0.89
    assert all(r['value'] == 1 for r in main if r['quantity'] == 'ci_test_agreement')
    assert all(r['value'] == 0 for r in main if r['quantity'] == 'zero_width')


def test_calibration_fdr_over_a_cube(calib):
    rows = {(r['scenario'], r['quantity']): r['value'] for r in calib.cube_fdr(fast=True)}
    assert rows[('cube BH over Tango/sign-flip p-values (kernels)', 'fdr')] <= 0.05
    assert rows[('cube BH through build_cube', 'fdr')] <= 0.05
    assert rows[('cube cells through build_cube', 'ci_test_agreement')] == 1
    assert rows[('cube cells through build_cube', 'zero_width')] == 0
    assert 0.92 <= rows[('cube cells through build_cube', 'coverage')] <= 0.98
