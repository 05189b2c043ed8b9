"""Predicted learnability: which directions an architecture can learn, from its NADs alone.

A score for any direction v from an NAD estimate (rows u_i, covariance eigenvalues
lambda_i, i.e. the gradient covariance Sigma = sum_i lambda_i u_i u_i^T):

- "energy": v^T Sigma v, the gradient energy of random networks along v (the
  quantity of the paper's bound: little energy, slow learning).
- "shift": v^T Sigma_bar v, with Sigma averaged over the circular shifts of the
  image. A CNN is nearly shift-equivariant, so its Sigma is nearly block-diagonal
  in the Fourier basis; averaging keeps exactly that part (per frequency f, the
  C x C matrix sum_i lambda_i u_i(f) u_i(f)^H) and drops what a finite estimate
  adds off it. For a Fourier direction it is the energy of its frequency
  whatever its phase.

Scores rank directions: a higher score predicts a higher test accuracy on D(v).
`agreement` measures a ranking against measured accuracies two ways: Spearman's
rho, and the AUC of the learned directions over those at chance (over a grid mostly
at chance, rho also ranks the noise among the chance cells; the AUC does not).
Computing them costs one matrix product (energy) or one FFT of the NADs
(shift): a full 32 x 32 Fourier grid takes well under a second on a CPU.
"""

from __future__ import annotations

import numpy as np

from .errors import ParamError
from .ranks import spearman

RULES = ("energy", "shift")
RULE = "shift"  # the default, and the one rule the stages use for every architecture (README)
KINDS = ("covariance", "singular")  # what an eigenvalues file holds (covariance_eigenvalues)


def covariance_eigenvalues(values: np.ndarray, kind: str = "covariance") -> np.ndarray:
    """Eigenvalues of the gradient covariance from a file's values: `covariance` as they
    are; `singular` for PCA singular values s = sqrt((n - 1) lambda) (the published
    `*_eigenvals.npy`), i.e. s^2 up to the factor n - 1, which changes no ranking."""
    values = _real("eigenvalues", values, 1)
    if kind == "covariance":
        return values
    if kind == "singular":
        return values**2
    raise ParamError(f"eigenvalue kind = {kind!r}: allowed: {', '.join(KINDS)}")


def scores(nads: np.ndarray, eigenvalues: np.ndarray, directions: np.ndarray, shape, rule: str = RULE) -> np.ndarray:
    """Score of each row of `directions` (n, D) for an NAD estimate: `nads` (K, D) rows,
    `eigenvalues` (K,) of the covariance, inputs of `shape` (C, H, W) with C*H*W = D."""
    if rule not in RULES:
        raise ParamError(f"rule = {rule!r}: allowed: {', '.join(RULES)}")
    nads, lam = _real("NADs", nads, 2), _real("eigenvalues", eigenvalues, 1)
    v = _real("directions", np.atleast_2d(directions), 2)
    c, h, w = shape
    if len(nads) == 0 or nads.shape[1] != c * h * w or v.shape[1] != c * h * w or len(lam) != len(nads):
        raise ParamError(
            f"NADs {nads.shape}, eigenvalues {lam.shape} and directions {v.shape} do not fit "
            f"inputs of shape {tuple(shape)} (D = {c * h * w}, at least one NAD, one eigenvalue each)"
        )
    # A covariance has no negative eigenvalue; rounding may leave a few at -1e-16 of the largest.
    if lam.min() < -1e-9 * max(lam.max(), 0.0):
        raise ParamError(
            f"eigenvalues: {int((lam < 0).sum())} are negative (down to {lam.min():.3g}); a covariance's "
            "eigenvalues are >= 0 (singular values? --eigenvalues-kind singular squares them)"
        )
    if rule == "energy":
        return ((v @ nads.T) ** 2) @ lam
    u = np.fft.fft2(nads.reshape(-1, c, h, w), norm="ortho")  # (K, C, H, W)
    sigma = np.einsum("k,kahw,kbhw->hwab", lam, u, u.conj())  # C x C per frequency
    vf = np.fft.fft2(v.reshape(-1, c, h, w), norm="ortho")  # (n, C, H, W)
    return np.einsum("nahw,hwab,nbhw->n", vf.conj(), sigma, vf).real


def _real(what: str, a, ndim: int) -> np.ndarray:
    """`a` as float64 if it is a finite real array of `ndim` dimensions."""
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise ParamError(f"{what}: {a.dtype} values; real numbers expected")
    if a.ndim != ndim:
        raise ParamError(f"{what}: shape {a.shape}; {ndim}-D expected")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise ParamError(f"{what}: {int((~np.isfinite(a)).sum())} values are NaN or infinite")
    return a


LEARNED = 0.6  # test accuracy above chance: 9 binomial sd at 2 000 test samples


def separation(score: np.ndarray, acc: np.ndarray) -> float:
    """The probability that a learned direction (test accuracy >= LEARNED) scores above one
    at chance, ties counting half (the AUC); NaN unless there are both."""
    hi, lo = score[acc >= LEARNED], score[acc < LEARNED]
    if not len(hi) or not len(lo):
        return float("nan")
    return float(((hi[:, None] > lo[None, :]).sum() + 0.5 * (hi[:, None] == lo[None, :]).sum()) / (len(hi) * len(lo)))


def agreement(score, acc) -> dict:
    """{"spearman", "auc"} of scores against measured test accuracies, over the finite ones
    (NaN where the accuracies do not vary, or none is learned or none at chance)."""
    score, acc = np.asarray(score, dtype=np.float64), np.asarray(acc, dtype=np.float64)
    ok = np.isfinite(acc)
    # Constant accuracies (logistic regression learns all): NaN.
    return {"spearman": spearman(score[ok], acc[ok]), "auc": separation(score[ok], acc[ok])}


def replicates(table: dict) -> list:
    """Each seed's test accuracies from a sweep's table (its `test_acc_seed<r>` columns), or
    its one `test_acc` column when it ran one seed."""
    keys = sorted((k for k in table if k.startswith("test_acc_seed")), key=lambda k: int(k[len("test_acc_seed") :]))
    return [np.asarray(table[k], dtype=np.float64) for k in keys or ["test_acc"]]


def agreement_over_seeds(score, accuracies: list) -> dict:
    """`agreement` with each seed's accuracies: the mean over seeds of "spearman" and "auc",
    and with more than one seed their spread "spearman_sd", "auc_sd" (ddof 1). A headline
    that a float-order change moves by more than this spread is measuring noise."""
    per = [agreement(score, acc) for acc in accuracies]
    out = {}
    for key in ("spearman", "auc"):
        v = np.array([p[key] for p in per])
        out[key] = float(v.mean())
        if len(v) > 1:
            out[f"{key}_sd"] = float(v.std(ddof=1))
    return out
