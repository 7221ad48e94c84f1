"""`cvqkd tx`: the transmitter as its own process (controller.commands.link_ends)."""

from controller.commands.link_ends import register_tx as register

__all__ = ["register"]
