"""`cvqkd rx`: the receiver as its own process (controller.commands.link_ends)."""

from controller.commands.link_ends import register_rx as register

__all__ = ["register"]
