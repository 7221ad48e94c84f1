"""Software model of the overlay (register level) and of the optical link (waveform level)."""
