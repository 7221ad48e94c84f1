"""Overlay drivers (pynq `DefaultIP` subclasses), register maps and board profiles.

Knows registers and physics, not protocols. `fpga_bindings.model` is the software model of the
overlay and of the optical link that plugs in under pynq as a `pynq.Device`.
"""
