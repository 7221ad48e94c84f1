"""State both ends keep per privacy-amplification block, and the block's end: finite-size
bound, privacy amplification, split into application keys and authentication refill, two-step
commit (Alice coordinates, Bob participates), pool refill. See docs/protocol.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from controller.auth import KeyPool
from controller.channel import Channel
from controller.config import LinkConfig
from controller.key_commit import accept_commit, commit_keys, refill_pool
from controller.keystore import APP, AUTH, KeyStore
from controller.link_protocol import (
    AbortReason,
    BlockBound,
    PeMoments,
    block_bound,
    estimate_moments,
)
from controller.link_report import BlockRecord, StageTimer
from controller.psk import ONE_TIME_KEY_BYTES
from reconcile import privacy_amp
from reconcile.rate_adapt import Adaptation

AUTH_UNIT_BITS = 8 * ONE_TIME_KEY_BYTES  # the pool is refilled in one-time keys of 256 bits


@dataclass
class EndContext:
    """One end's resources (its own store and pool; the channel is its only link to the
    peer). `progress` gets public one-line status messages."""

    cfg: LinkConfig
    channel: Channel
    store: KeyStore
    pool: KeyPool
    timer: StageTimer
    progress: Callable[[str], None]
    peer_id: str


class PackedBits:
    """A growing bit string kept packed (privacy_amp's little bit order): one bit per bit of
    memory instead of a byte; fewer than 8 trailing bits wait unpacked for the next append."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._tail = np.zeros(0, np.uint8)

    @property
    def size(self) -> int:
        """Bits held."""
        return 8 * len(self._data) + self._tail.size

    def append(self, bits: np.ndarray) -> None:
        """Append a uint8 0/1 vector."""
        bits = np.concatenate([self._tail, np.asarray(bits, np.uint8).reshape(-1)])
        whole = bits.size - bits.size % 8
        self._data += privacy_amp.pack_bits(bits[:whole])
        self._tail = bits[whole:].copy()

    def packed(self) -> bytes:
        """All bits, packed (the last byte zero-padded)."""
        return bytes(self._data) + privacy_amp.pack_bits(self._tail)


@dataclass
class BlockState:
    """What one end accumulates over the frames of the current block. Its memory grows by
    the reconciled bits only (packed: ~N/4 bytes for an N-symbol heterodyne block); the PE
    data enter as running sums (`PeMoments`), identical at both ends."""

    index: int = 0
    frames: list[int] = field(default_factory=list)
    seen: int = 0  # frames (verified or aborted) since the block opened
    n_total: int = 0  # symbols of every frame of the block (aborted frames excluded)
    pe: PeMoments = field(default_factory=PeMoments)  # PE pairs' second moments (public)
    # PE sums of frames rejected by the estimation checks (excess noise, SNR out of range):
    # they enter the block's estimate, so a frame-level abort never post-selects the data
    # the bound rests on. Kept apart from `pe` so both ends add in the same order.
    pe_rejected: PeMoments = field(default_factory=PeMoments)
    bits: PackedBits = field(default_factory=PackedBits)  # reconciled bits (SECRET)
    n_decoded: int = 0  # key symbols in verified codewords
    net_bits: int = 0  # sum of (k - shortened) over verified codewords
    codewords: int = 0
    failed: int = 0
    leak_verify_bits: int = 0
    v_el: float = 0.0  # electronic noise of the latest calibration, SNU
    pool_used_at_start: int = 0

    def reset(self, pool_used: int) -> None:
        self.__init__(index=self.index + 1, pool_used_at_start=pool_used)  # type: ignore[misc]

    def add_frame(self, cfg: LinkConfig, f: int, n: int, pe: PeMoments, v_el: float,
                  kept: np.ndarray, good: int, n_cw: int, ad: Adaptation) -> None:
        """Frame f's verified codewords (`kept`, their free bits, uint8 0/1), `good` of `n_cw`
        codewords of the adapted code `ad`, and its PE sums; the same call at both ends."""
        code = ad.code
        self.frames.append(f)
        self.n_total += n
        self.pe = self.pe + pe
        self.v_el = v_el
        self.bits.append(kept)
        per_sym = 2 if cfg.modulation.detection == "heterodyne" else 1
        self.n_decoded += good * ad.transmitted.size // per_sym
        self.net_bits += good * (code.n - code.m - code.shortened.size)
        self.codewords += n_cw
        self.failed += n_cw - good

    def bound(self, cfg: LinkConfig, auth_key_bits: int) -> BlockBound | None:
        """The block's finite-size accounting, or None if it holds no verified frame. The
        estimate pools the PE pairs of every frame that reached estimation, rejected or not."""
        if self.pe.m == 0 or self.bits.size == 0:
            return None
        est = estimate_moments(cfg, self.pe + self.pe_rejected, self.v_el)
        return block_bound(cfg, est, v_el=self.v_el, n_total=self.n_total,
                           n_decoded=self.n_decoded, net_bits=self.net_bits,
                           codewords=self.codewords, failed=self.failed,
                           input_bits=self.bits.size, leak_verify_bits=self.leak_verify_bits,
                           auth_key_bits=auth_key_bits)


def block_record(state: BlockState, bb: BlockBound | None) -> BlockRecord:
    rec = BlockRecord(block=state.index, frames=list(state.frames), n_total=state.n_total,
                      ok=False)
    if bb is None:
        rec.reason = AbortReason.NO_FINITE_SIZE_KEY.value
        rec.detail = "no key: no verified frame in the block"
        return rec
    e = bb.estimate
    half = e.excess_noise_max - e.excess_noise
    rec.transmittance, rec.transmittance_min = e.transmittance, e.transmittance_min
    rec.xi, rec.xi_max, rec.xi_low = e.excess_noise, e.excess_noise_max, e.excess_noise - half
    rec.snr, rec.v_el, rec.beta, rec.fer = e.snr, state.v_el, bb.beta, bb.fer
    rec.bound_bits_per_key_symbol = bb.bits_per_symbol
    rec.pe_samples, rec.v_a = e.m, e.v_a
    rec.n_decoded, rec.leak_verify_bits = bb.n_decoded, state.leak_verify_bits
    rec.hash_input_bits = state.bits.size
    rec.hash_output_bits = bb.pa.hash_output_bits
    return rec


def split_key(key: bytes, m: int, auth_key_bits: int, key_bytes: int) -> tuple[list[bytes],
                                                                           list[bytes]]:
    """(application keys of key_bytes each, authentication refill) from an m-bit PA output.
    The refill comes first, in whole one-time keys, up to auth_key_bits; the rest is cut into
    application keys; leftover bits (< one key) are dropped."""
    auth_units = min(auth_key_bits, m) // AUTH_UNIT_BITS
    auth_len = auth_units * ONE_TIME_KEY_BYTES
    app_bytes = (m - auth_units * AUTH_UNIT_BITS) // 8
    n_app = app_bytes // key_bytes
    app = [key[auth_len + i * key_bytes: auth_len + (i + 1) * key_bytes] for i in range(n_app)]
    auth = [key[:auth_len]] if auth_len else []
    return app, auth


async def privacy_amplify(ctx: EndContext, state: BlockState, m: int, seed: bytes) -> bytes:
    """Hash the block's reconciled bits to m bits (packed)."""
    with ctx.timer.stage("privacy_amplification"):
        return await asyncio.to_thread(privacy_amp.hash_packed, state.bits.packed(),
                                       state.bits.size, seed, m)


async def commit(ctx: EndContext, app: list[bytes], auth: list[bytes], coordinator: bool) -> None:
    """Two-step commit of the application keys, then of the authentication refill; both ends
    then move committed refill keys into their pools."""
    link = ctx.cfg.endpoints.link_id
    fn = commit_keys if coordinator else accept_commit
    with ctx.timer.stage("commit"):
        for materials, purpose in ((app, APP), (auth, AUTH)):
            if materials:
                await fn(ctx.channel, ctx.store, materials, link_id=link, peer_id=ctx.peer_id,
                         purpose=purpose)
        refill_pool(ctx.pool, ctx.store)
