"""Key store and channel throughput (pytest-benchmark; run with `make bench`)."""

from __future__ import annotations

import os
import uuid

import numpy as np
import pytest
from channel_util import make_pool_pair, run

from controller.framing import MsgType
from controller.keystore import COMMITTED, COORDINATOR, PREPARED, KeyStore, create_device_key

pytestmark = pytest.mark.benchmark
N_KEYS = 10_000
TARGET_KEYS_PER_S = 1e4


@pytest.fixture
def store(tmp_path):
    create_device_key(tmp_path / "dev.key")
    with KeyStore.create(tmp_path / "k.db", tmp_path / "dev.key") as s:
        yield s


def _batch():
    keys = [(str(uuid.uuid4()), os.urandom(32), 256) for _ in range(N_KEYS)]
    return (str(uuid.uuid4()), keys), {}


def _check_rate(benchmark, label):
    if benchmark.stats is None:  # --benchmark-disable: ran once, nothing measured
        return
    rate = N_KEYS / benchmark.stats.stats.min
    benchmark.extra_info[label] = rate
    assert rate >= TARGET_KEYS_PER_S, f"{rate:.0f} keys/s"


def test_bench_store_10k_ready_keys(benchmark, store):
    """10^4 keys of 256 bits, AES-GCM encrypted, stored ready in one transaction."""
    def add(batch_id, keys):
        store.add_batch(batch_id, keys, link_id="L", peer_id="bob", role=COORDINATOR,
                        status=COMMITTED)

    benchmark.pedantic(add, setup=_batch, rounds=8, warmup_rounds=1)
    _check_rate(benchmark, "keys_per_s")


def test_bench_store_10k_keys_two_step(benchmark, store):
    """The commit protocol's local cost: store pending, then mark ready (two transactions)."""
    def add_and_commit(batch_id, keys):
        store.add_batch(batch_id, keys, link_id="L", peer_id="bob", role=COORDINATOR,
                        status=PREPARED)
        store.commit_batch(batch_id)

    benchmark.pedantic(add_and_commit, setup=_batch, rounds=8, warmup_rounds=1)
    _check_rate(benchmark, "keys_per_s")


def test_bench_channel_round_trips(benchmark, tmp_path):
    """One session: handshake + 200 authenticated request/response pairs of 1 KiB arrays
    over loopback TCP (400 frames)."""
    pa, pb = make_pool_pair(tmp_path, n_keys=20_000)
    payload = np.zeros(256, dtype=np.float32)

    async def alice(ch):
        for _ in range(200):
            await ch.send(MsgType.DATA, {"x": payload})
            await ch.recv(MsgType.DATA)
        await ch.close()

    async def bob(ch):
        for _ in range(200):
            await ch.recv(MsgType.DATA)
            await ch.send(MsgType.DATA, {"x": payload})

    benchmark.pedantic(run, args=(pa, pb, alice, bob), rounds=3)


def test_bench_channel_bulk_array(benchmark, tmp_path):
    """One 8 MB float64 array (10^6 samples) Alice -> Bob, authenticated."""
    pa, pb = make_pool_pair(tmp_path, n_keys=1000)
    arr = np.random.default_rng(0).standard_normal(10**6)

    async def alice(ch):
        await ch.send(MsgType.ESTIMATION, {"y": arr})
        await ch.recv(MsgType.DATA)
        await ch.close()

    async def bob(ch):
        msg = await ch.recv(MsgType.ESTIMATION)
        await ch.send(MsgType.DATA, {"n": int(msg.fields["y"].size)})

    benchmark.pedantic(run, args=(pa, pb, alice, bob), rounds=3)

