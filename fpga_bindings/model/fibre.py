"""Fibre propagation: transmittance from loss, and group delay."""

from __future__ import annotations

C_VACUUM_M_PER_S = 299_792_458.0
H_PLANCK_J_S = 6.626_070_15e-34


def transmittance(distance_km: float, loss_db_per_km: float, extra_loss_db: float = 0.0) -> float:
    """Power transmittance T = 10^(-(a L + extra)/10) (0 for an infinite loss)."""
    return float(10.0 ** (-(loss_db_per_km * distance_km + extra_loss_db) / 10.0))


def delay_s(distance_km: float, group_index: float) -> float:
    """One-way group delay, seconds: L n_g / c."""
    return distance_km * 1.0e3 * group_index / C_VACUUM_M_PER_S


def photon_energy_j(wavelength_m: float) -> float:
    """h c / lambda, joules."""
    return H_PLANCK_J_S * C_VACUUM_M_PER_S / wavelength_m
