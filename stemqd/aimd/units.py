"""Physical constants in the units of the AIMD analyses (CODATA 2018 values).

Energies in meV, times in fs, temperatures in K, lengths in Å, masses in amu.
"""

import math

#: Planck constant (meV fs).
H_MEV_FS = 4135.667696
#: Reduced Planck constant (meV fs), h / 2 pi (= 658.2119569) so that E = hbar omega and the
#: FFT grid E_j = j h / (N dt) agree to the last digit.
HBAR_MEV_FS = H_MEV_FS / (2.0 * math.pi)
#: Hartree energy (eV), CODATA 2018.
HARTREE_EV = 27.211386245988
#: Boltzmann constant (meV/K).
KB_MEV_K = 0.08617333262
#: Kinetic-energy unit: 1 amu Å^2/fs^2 in meV (1.66053906660e-17 J / 1.602176634e-22 J/meV).
AMU_A2_PER_FS2_MEV = 1.66053906660e-17 / 1.602176634e-22
#: meV per THz (h x 1 THz) and per cm^-1.
MEV_PER_THZ = H_MEV_FS * 1e-3
MEV_PER_INV_CM = 0.12398419843320026


__all__ = ["AMU_A2_PER_FS2_MEV", "HARTREE_EV", "H_MEV_FS", "HBAR_MEV_FS", "KB_MEV_K", "MEV_PER_THZ"]
