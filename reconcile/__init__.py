"""The security core: parameter estimation, key-rate bounds, reconciliation (MDR, LDPC),
verification and privacy amplification. Pure: arrays in, arrays out, no I/O."""
