"""Hardware-in-the-loop bench tests: `--target model` (default) or `--target board`.

`--target model` runs the tests against the software model of the board through the same
drivers; `--target board --bitfile PATH` runs them on an RFSoC board with the cvqkd overlay (the
tests skip when no board is present).
"""

from __future__ import annotations

import pytest
from pynq.ps import ON_TARGET


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hil", "hardware-in-the-loop bench tests")
    group.addoption("--target", choices=("model", "board"), default="model",
                    help="run hil_tests against the software model (default) or a board")
    group.addoption("--bitfile", default=None,
                    help="cvqkd overlay bitstream for --target board (its .hwh beside it)")
    group.addoption("--model-seed", type=int, default=2024,
                    help="seed of the model's noise for --target model")
    group.addoption("--spool-km", type=float, default=25.0,
                    help="--target board: length of the loopback fibre spool, km (sets the "
                         "capture's trigger delay)")


@pytest.fixture
def overlay(request: pytest.FixtureRequest):
    """The cvqkd overlay on the selected target (a fresh model per test)."""
    target = request.config.getoption("--target")
    if target == "board":
        bitfile = request.config.getoption("--bitfile")
        if not ON_TARGET:
            pytest.skip("--target board: no PYNQ board here")
        if not bitfile:
            pytest.skip("--target board needs --bitfile")
        from fpga_bindings.overlay import open_board

        return open_board(bitfile)
    from fpga_bindings.model.link import LinkConfig, LinkModel
    from fpga_bindings.overlay import open_model

    seed = request.config.getoption("--model-seed")
    return open_model(physics=LinkModel(LinkConfig(seed=seed)))
