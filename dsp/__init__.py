"""Transmitter waveforms and receiver DSP in numba. Pure: arrays in, arrays out, no I/O."""
