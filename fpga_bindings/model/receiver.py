"""The per-sample loop of the link model after sampling: beat phase, detection noise, ADC.

For output sample j of a chunk (see docs/model.md for the derivation):
    u_j   = u0 + j du (+ jitter_j fs_tx)            position in the DAC waveform, player samples
                                                     (sampled by `resample.interp_uniform`)
    psi_j = linear interpolation of the phase grid   total beat phase, rad (grid every K samples)
    v_j   = amp * field(u_j) * exp(i psi_j)          signal, ADC codes (field band-limited, SNU)
    DDC heterodyne:  I + iQ = v_j + sigma (w0 + i w1)
    DDC homodyne:    I = Re v_j + sigma w0, Q = 0
    REAL_IF:         x = c Re v_j + sigma w0       (c = sqrt 2 heterodyne, 1 homodyne)
then quantisation (step `qstep` codes) and saturation to the int16 range, with a clip counter.
Parameters are piecewise constant over segments (fault windows). Optionally the detection
noise de-rotated by the true phase, in SNU, is written out for the ideal receiver (genie).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from fpga_bindings.model.normal import normal_from_word, sfc64_next

KIND_DDC_HET = 0
KIND_DDC_HOM = 1
KIND_REAL_HET = 2
KIND_REAL_HOM = 3


@numba.njit(cache=True, nogil=True, fastmath=True)
def render(s_r: np.ndarray, s_i: np.ndarray, psi: np.ndarray, grid: int,
           seg_end: np.ndarray, seg_amp: np.ndarray, seg_sigma: np.ndarray,
           seg_zsnu: np.ndarray, noise_state: np.ndarray, jitter: np.ndarray, jit_phase: float,
           pn: np.ndarray, pn_sd: float,
           kind: int, qstep: float, out: np.ndarray, zrot: np.ndarray,
           fine: np.ndarray) -> int:
    """Fill `out` (int16, (m, 2) or (m, 1)); return the number of clipped samples.

    s_r, s_i: the band-limited DAC field at the sampling instants (SNU per player sample),
    from `resample.interp_uniform`. psi: beat phase at chunk samples 0, grid, 2 grid, ...
    (m // grid + 2 values). noise_state: the SFC64 state (uint64 (4,), `normal.seed_state`,
    advanced in place) of the detection noise: sample j draws one generator output, whose low
    and (heterodyne DDC) high 32 bits give its standard normals (`normal.normal_from_word`).
    jitter: the standard normals of the sampling jitter (m,) or empty; jit_phase = 2 pi f_beat
    times the rms jitter. pn: float32 zero-mean steps of variance spectrum (1/12) sinc^2(f)
    (`phase_steps.StepSource`; a multiple of grid >= m, or empty) for the laser phase noise
    between grid points: a bridge of per-sample steps (long-term standard deviation pn_sd, rad)
    pinned to 0 at every grid point, so that psi stays exact there. The steps are filtered
    uniforms, not Gaussian (cheaper): the bridge's covariance, hence the phase-noise spectrum,
    is that of the band-limited Wiener phase (no aliased skirts); only higher moments differ.
    zrot: complex64 (m,) or empty: de-rotated detection noise, SNU. fine: float32 (m,) or
    empty: the bridge (rad) per sample, for the ground truth.
    """
    top = 32767.0 if kind <= KIND_DDC_HOM else 32768.0 - qstep
    bottom = -32768.0
    use_jit = jitter.shape[0] > 0
    want_z = zrot.shape[0] > 0
    re_gain = math.sqrt(2.0) if kind == KIND_REAL_HET else 1.0
    use_pn = pn.shape[0] > 0
    pn_step = pn_sd * math.sqrt(12.0)  # uniform on [-1/2, 1/2) has variance 1/12
    want_fine = fine.shape[0] > 0
    drift = 0.0  # mean bridge step in the current grid interval, rad
    bridge = 0.0
    q_re = 1.0  # exp(i bridge)
    q_im = 0.0
    clips = 0
    ph_re = 1.0
    ph_im = 0.0
    rot_re = 1.0
    rot_im = 0.0
    g_a, g_b, g_c, g_w = noise_state[0], noise_state[1], noise_state[2], noise_state[3]
    j = 0
    g = -1  # current grid interval
    next_grid = 0  # first sample of the next grid interval (no division per sample)
    for s in range(seg_end.shape[0]):
        amp = seg_amp[s]
        sigma = seg_sigma[s]
        zsnu = seg_zsnu[s]
        while j < seg_end[s]:
            if j == next_grid:
                g += 1
                next_grid += grid
                step = (psi[g + 1] - psi[g]) / grid
                ph_re = math.cos(psi[g])
                ph_im = math.sin(psi[g])
                rot_re = math.cos(step)
                rot_im = math.sin(step)
                bridge = 0.0
                q_re = 1.0
                q_im = 0.0
                if use_pn:
                    acc = 0.0
                    for i in range(g * grid, g * grid + grid):
                        acc += pn[i]
                    drift = acc * pn_step / grid
            elif use_pn:  # one Wiener step minus the interval's mean: e^{i d} to 4th order
                d = pn[j - 1] * pn_step - drift
                bridge += d
                d2 = d * d
                e_re = 1.0 - 0.5 * d2 + d2 * d2 / 24.0
                e_im = d * (1.0 - d2 / 6.0)
                t_q = q_re * e_re - q_im * e_im
                q_im = q_re * e_im + q_im * e_re
                q_re = t_q
            c_re = ph_re * q_re - ph_im * q_im
            c_im = ph_re * q_im + ph_im * q_re
            if want_fine:
                fine[j] = bridge
            if use_jit:
                e = jitter[j] * jit_phase
                ce = math.cos(e)
                se = math.sin(e)
                t_c = c_re * ce - c_im * se
                c_im = c_re * se + c_im * ce
                c_re = t_c
            a_re = amp * s_r[j]
            a_im = amp * s_i[j]
            word, g_a, g_b, g_c, g_w = sfc64_next(g_a, g_b, g_c, g_w)
            w0, g_a, g_b, g_c, g_w = normal_from_word(word, g_a, g_b, g_c, g_w)
            x = re_gain * (a_re * c_re - a_im * c_im) + sigma * w0
            clipped = False
            xq = math.floor(x / qstep + 0.5) * qstep
            if xq >= top:  # at or beyond full scale counts, as the clip counter does
                xq = top
                clipped = True
            elif xq <= bottom:
                xq = bottom
                clipped = True
            out[j, 0] = np.int16(xq)
            if kind == KIND_DDC_HET:
                w1, g_a, g_b, g_c, g_w = normal_from_word(word >> np.uint64(32), g_a, g_b, g_c,
                                                          g_w)
                y = (a_re * c_im + a_im * c_re) + sigma * w1
                yq = math.floor(y + 0.5)
                if yq >= top:
                    yq = top
                    clipped = True
                elif yq <= bottom:
                    yq = bottom
                    clipped = True
                out[j, 1] = np.int16(yq)
                if want_z:  # (w0 + i w1) * conj(phase), SNU
                    zrot[j] = complex(zsnu * (w0 * c_re + w1 * c_im),
                                      zsnu * (w1 * c_re - w0 * c_im))
            else:
                if kind == KIND_DDC_HOM:
                    out[j, 1] = 0
                if want_z:
                    zrot[j] = complex(zsnu * w0, 0.0)
            if clipped:
                clips += 1
            t_re = ph_re * rot_re - ph_im * rot_im  # advance the phasor by one sample
            ph_im = ph_re * rot_im + ph_im * rot_re
            ph_re = t_re
            j += 1
    noise_state[0] = g_a
    noise_state[1] = g_b
    noise_state[2] = g_c
    noise_state[3] = g_w
    return clips
