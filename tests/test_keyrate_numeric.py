"""The key-rate closed forms against an independent numerical covariance-matrix computation.

Builds the full covariance matrix of the entanglement-based GG02 picture, mode by mode, with
beam splitters and two-mode squeezed vacua (x, p ordering per mode, SNU):
  A-B0: Alice's EPR pair (variance V = V_A + 1); Alice's heterodyne on A prepares the coherent
        states of the prepare-and-measure protocol;
  E0-E1: Eve's entangling cloner, an EPR pair of variance W = 1 + T xi / (1 - T); E0 enters the
        channel beam splitter (transmittance T), E0' leaves it, E1 stays with Eve;
  F0-G: the detector's noise: an EPR pair of variance v_det whose F0 enters a beam splitter of
        transmittance eta before Bob's ideal homodyne or heterodyne measurement, with
        (1 - eta) v_det = 1 - eta + v_el (homodyne) or 1 - eta + 2 v_el (heterodyne).
Eve's Holevo information is computed DIRECTLY from her modes (E0', E1; plus F1, G when the
detector is untrusted): chi_BE = S(E) - S(E | Bob's outcome), with symplectic eigenvalues from the
eigenvalues of i Omega gamma, and Gaussian conditioning on Bob's measurement. I_AB comes from the
same covariance matrix: Bob's quadrature variance with and without Alice's heterodyne outcome.
Needs T < 1, and eta < 1 unless v_el = 0 (finite W, v_det).
"""

from __future__ import annotations

import numpy as np
import pytest

from reconcile import keyrate

# mode indices in the 6-mode state
A, B, E0, E1, F, G = range(6)
N_MODES = 6


def _tmsv(gamma: np.ndarray, i: int, j: int, v: np.ndarray) -> None:
    """Put a two-mode squeezed vacuum of variance v on modes i, j of a batch of CMs."""
    c = np.sqrt(v * v - 1.0)
    for k, s in ((0, 1.0), (1, -1.0)):
        gamma[:, 2 * i + k, 2 * i + k] = v
        gamma[:, 2 * j + k, 2 * j + k] = v
        gamma[:, 2 * i + k, 2 * j + k] = s * c
        gamma[:, 2 * j + k, 2 * i + k] = s * c


def _beam_splitter(gamma: np.ndarray, i: int, j: int, tau: np.ndarray) -> np.ndarray:
    """Mode i -> sqrt(tau) i + sqrt(1 - tau) j, mode j -> -sqrt(1 - tau) i + sqrt(tau) j."""
    n = gamma.shape[0]
    s = np.tile(np.eye(2 * N_MODES), (n, 1, 1))
    a, b = np.sqrt(tau), np.sqrt(1.0 - tau)
    for k in (0, 1):
        s[:, 2 * i + k, 2 * i + k] = a
        s[:, 2 * i + k, 2 * j + k] = b
        s[:, 2 * j + k, 2 * i + k] = -b
        s[:, 2 * j + k, 2 * j + k] = a
    return s @ gamma @ np.swapaxes(s, 1, 2)


def _idx(modes: list[int]) -> list[int]:
    return [2 * m + k for m in modes for k in (0, 1)]


def symplectic_eigenvalues(gamma: np.ndarray) -> np.ndarray:
    """Batch of (n, 2k, 2k) CMs -> (n, k) symplectic eigenvalues: the moduli of the eigenvalues
    of i Omega gamma (they come in +- pairs)."""
    k = gamma.shape[-1] // 2
    omega = np.kron(np.eye(k), np.array([[0.0, 1.0], [-1.0, 0.0]]))
    ev = np.abs(np.linalg.eigvals(1j * omega @ gamma))
    return np.sort(ev, axis=-1)[:, ::2]


def entropy(gamma: np.ndarray) -> np.ndarray:
    """Von Neumann entropy (bits) of a batch of Gaussian states, straight from the definition."""
    nu = np.maximum(symplectic_eigenvalues(gamma), 1.0)
    x = (nu - 1.0) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.where(x > 0, (x + 1) * np.log2(x + 1) - x * np.log2(np.where(x > 0, x, 1)), 0.0)
    return h.sum(axis=-1)


def condition(gamma: np.ndarray, keep: list[int], meas: int, heterodyne: bool) -> np.ndarray:
    """CM of modes `keep` after homodyne (x) or heterodyne on mode `meas`."""
    ki, mi = _idx(keep), _idx([meas])
    g_k = gamma[:, ki][:, :, ki]
    sig = gamma[:, ki][:, :, mi]
    g_m = gamma[:, mi][:, :, mi]
    if heterodyne:
        inv = np.linalg.inv(g_m + np.eye(2))
    else:
        inv = np.zeros_like(g_m)
        inv[:, 0, 0] = 1.0 / g_m[:, 0, 0]
    return g_k - sig @ inv @ np.swapaxes(sig, 1, 2)


def full_state(v_a, t, xi, eta, v_el, heterodyne: bool) -> np.ndarray:
    """6-mode CM after channel and detector beam splitter; mode B is what Bob measures."""
    v_a, t, xi, eta, v_el = np.broadcast_arrays(*(np.asarray(a, float) for a in
                                                  (v_a, t, xi, eta, v_el)))
    n = v_a.size
    gamma = np.zeros((n, 2 * N_MODES, 2 * N_MODES))
    _tmsv(gamma, A, B, v_a.ravel() + 1.0)
    _tmsv(gamma, E0, E1, 1.0 + t.ravel() * xi.ravel() / (1.0 - t.ravel()))
    k = 2.0 if heterodyne else 1.0
    loss = 1.0 - eta.ravel()
    v_det = 1.0 + np.divide(k * v_el.ravel(), loss, out=np.zeros_like(loss), where=loss > 0)
    _tmsv(gamma, F, G, v_det)
    gamma = _beam_splitter(gamma, B, E0, t.ravel())
    return _beam_splitter(gamma, B, F, eta.ravel())


def reference_rate(v_a, t, xi, eta, v_el, heterodyne: bool, trusted: bool):
    """(I_AB, chi_BE) in bits per symbol, from the covariance matrix alone."""
    gamma = full_state(v_a, t, xi, eta, v_el, heterodyne)
    eve = [E0, E1] if trusted else [E0, E1, F, G]
    ei = _idx(eve)
    chi = entropy(gamma[:, ei][:, :, ei]) - entropy(condition(gamma, eve, B, heterodyne))
    # I_AB: Bob's outcome variance, unconditioned and conditioned on Alice's heterodyne on A
    g_b = gamma[:, _idx([B])][:, :, _idx([B])]
    g_b_a = condition(gamma, [B], A, heterodyne=True)
    if heterodyne:  # each of Bob's outputs carries one extra vacuum unit before the 50:50 split
        i_ab = np.log2((g_b[:, 0, 0] + 1.0) / (g_b_a[:, 0, 0] + 1.0))
    else:
        i_ab = 0.5 * np.log2(g_b[:, 0, 0] / g_b_a[:, 0, 0])
    return i_ab, chi


CASES = [(det, dd) for det in ("homodyne", "heterodyne") for dd in ("trusted", "untrusted")]


def _grid(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "v_a": np.exp(rng.uniform(np.log(0.05), np.log(200.0), n)),
        "t": np.exp(rng.uniform(np.log(1e-3), np.log(0.995), n)),
        "xi": rng.uniform(0.0, 0.3, n),
        "eta": rng.uniform(0.2, 0.99, n),
        "v_el": rng.uniform(0.0, 0.5, n),
    }


@pytest.mark.parametrize(("detection", "detector"), CASES)
def test_closed_forms_match_covariance_matrix_model(detection: str, detector: str) -> None:
    g = _grid(1200, seed=CASES.index((detection, detector)))
    het = detection == "heterodyne"
    i_ref, chi_ref = reference_rate(g["v_a"], g["t"], g["xi"], g["eta"], g["v_el"], het,
                                    detector == "trusted")
    r = keyrate.asymptotic_rate(g["v_a"], g["t"], g["xi"], 0.95, eta=g["eta"], v_el=g["v_el"],
                                detection=detection, detector=detector)
    np.testing.assert_allclose(r.i_ab, i_ref, rtol=1e-9)
    np.testing.assert_allclose(r.chi_be, chi_ref, rtol=1e-9)
    np.testing.assert_allclose(r.k_raw, 0.95 * i_ref - chi_ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("detection", ["homodyne", "heterodyne"])
def test_ideal_detector_matches_model(detection: str) -> None:
    """eta = 1, v_el = 0: the detector modes are vacuum; trusted and untrusted coincide."""
    g = _grid(300, seed=7)
    one, zero = np.ones(300), np.zeros(300)
    het = detection == "heterodyne"
    i_ref, chi_ref = reference_rate(g["v_a"], g["t"], g["xi"], one, zero, het, True)
    for detector in ("trusted", "untrusted"):
        r = keyrate.asymptotic_rate(g["v_a"], g["t"], g["xi"], 1.0, detection=detection,
                                    detector=detector)
        np.testing.assert_allclose(r.i_ab, i_ref, rtol=1e-9)
        np.testing.assert_allclose(r.chi_be, chi_ref, rtol=1e-9)


def test_reference_model_sanity() -> None:
    """The reference itself: pure states have zero entropy, Bob's variance is as specified."""
    gamma = full_state(3.0, 0.4, 0.05, 0.6, 0.1, heterodyne=False)
    assert abs(entropy(gamma)[0]) < 1e-9  # the whole 6-mode state is pure
    # Bob's homodyne variance: eta (T (V_A + xi) + 1) + 1 - eta + v_el
    expect = 0.6 * (0.4 * 3.05 + 1.0) + 0.4 + 0.1
    assert gamma[0, 2 * B, 2 * B] == pytest.approx(expect, rel=1e-12)
