"""Alice, the transmitter: draws secret Gaussian symbols (ChaCha20 keyed from the OS CSPRNG),
emits the frame, discloses the PE subset, decodes Bob's reverse reconciliation, sends the
verification tag, recomputes Bob's privacy-amplification length and coordinates the commit.

Frames are pipelined two deep: Alice decodes frame f-1 on worker threads while Bob captures,
processes and encodes frame f (frame f's PARAMS and ESTIMATION go before frame f-1's VERIFY);
frame f's decoding starts as soon as its SYNDROME arrives, overlapping the end of f-1's.
Messages and their order: docs/protocol.md."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from controller.framing import MsgType
from controller.link_end import BlockState, EndContext, commit, privacy_amplify, split_key
from controller.link_protocol import (
    NONCE_BYTES,
    VERIFY_TAG_BITS,
    AbortReason,
    LinkAbort,
    PeMoments,
    adapt,
    check_estimate,
    codeword_tags,
    config_digest,
    decoder_iterations,
    estimate_moments,
    key_reals,
    mother_code,
    pe_indices,
    verify_keys_needed,
)
from controller.link_quantum import Emission, Transmitter
from controller.link_report import StageTimer
from dsp.layout import edge_layout
from dsp.transmitter import TxConfig, build_frame
from reconcile import mdr, rate_adapt
from reconcile.ldpc_decoder import Decoder, DecodeResult, decoder_for
from reconcile.rate_adapt import Adaptation

# Decoder threads: each takes groups of 8 codewords (one SIMD vector); the results do not
# depend on the count. Two: the cores of the target machine.
DECODER_THREADS = min(2, os.cpu_count() or 1)

clock = time.monotonic  # the wall clock of a run's duration, seconds (tests replace it)


def tx_config(ctx: EndContext, qc: Transmitter) -> TxConfig:
    """The frame layout at the transmitter's player rate: modulation.layout "centre" (TxConfig's
    defaults) or "edge" (dsp.layout.edge_layout: strong-pilot power for
    modulation.planned_linewidth_hz and the planned channel's T eta and v_el)."""
    m, p = ctx.cfg.modulation, ctx.cfg.physics
    if m.layout == "edge":
        return replace(edge_layout(qc.player_sps, m.planned_linewidth_hz,
                                   symbol_rate_hz=m.symbol_rate_hz, v_a=m.v_a,
                                   transmittance_eta=p.transmittance * p.eta, v_el=p.v_el),
                       dac_bits=qc.dac_bits)
    return TxConfig(sample_rate_hz=qc.player_sps, symbol_rate_hz=m.symbol_rate_hz, v_a=m.v_a,
                    dac_bits=qc.dac_bits)


@dataclass
class Disclosed:
    """A frame whose PE subset Alice has disclosed (ESTIMATION sent), Bob's answer pending."""

    frame: int
    symbols: np.ndarray  # Alice's data symbols, complex SNU (SECRET)
    idx: np.ndarray  # PE indices
    x_pe: np.ndarray


@dataclass
class Decoding:
    """A frame whose syndromes Alice holds; decoded on worker threads (`start`) while Bob
    works on the next frame."""

    frame: int
    n: int  # data symbols of the frame
    pe: PeMoments
    v_el: float
    ad: Adaptation
    n_cw: int
    job: Callable[[], DecodeResult] | None  # LLRs + decoder (dropped once started)
    result: asyncio.Task[DecodeResult] | None = None

    def start(self, timer: StageTimer) -> None:
        """Start decoding on a worker thread (once)."""
        job, self.job = self.job, None
        assert job is not None

        async def run() -> DecodeResult:
            with timer.stage("reconciliation"):
                return await asyncio.to_thread(job)

        self.result = asyncio.ensure_future(run())


async def run_alice(ctx: EndContext, qc: Transmitter, n_frames: int | None,
                    duration_s: float | None = None) -> None:
    """Run frames until `n_frames` were sent (None: no limit) or `duration_s` seconds of wall
    time have passed since the first frame started (None: no limit); at least one frame.
    The frames in progress then complete and the open block is closed."""
    cfg, ch, timer = ctx.cfg, ctx.channel, ctx.timer
    if n_frames is None and duration_s is None:
        raise ValueError("run_alice needs a frame count or a duration")
    await ch.send(MsgType.PARAMS, {"config": config_digest(cfg)})
    if (await ch.recv(MsgType.PARAMS)).fields.get("ok") != 1:
        raise LinkAbort(AbortReason.CONFIG_MISMATCH)
    tx = tx_config(ctx, qc)
    n = cfg.protocol.frame_symbols
    block = BlockState()
    t0 = clock()

    def more(f: int) -> bool:
        if f == 0:
            return True
        if n_frames is not None and f >= n_frames:
            return False
        return duration_s is None or clock() - t0 < duration_s

    def synthesise(f: int) -> asyncio.Future:
        """Frame f's waveform on a worker thread (its ChaCha20 key drawn now from the OS
        CSPRNG), so that it overlaps the reconciliation of the frames before."""
        return asyncio.ensure_future(asyncio.to_thread(build_frame, tx, n, os.urandom(32), f))

    decoding: Decoding | None = None
    nxt: Decoding | None = None
    pending = synthesise(0)
    f = 0
    try:
        while more(f):
            with timer.stage("emit_capture"):
                frame = await pending
            pending = None
            timing = await qc.emit(Emission(f, frame.iq_int16, frame.meta["quad_per_lsb"],
                                            frame.meta))
            await ch.send(MsgType.PARAMS, {"frame": f, "tx_meta": json.dumps(
                {**frame.meta, **timing})})
            symbols = frame.symbols
            del frame
            sift = await ch.recv(MsgType.SIFT)
            _check_frame(sift.fields, f)
            # frame f+1 synthesised ahead (never sent, its key never used, if the run stops
            # first), from SIFT on: after Bob's capture of f, whose working set it would add to
            pending = synthesise(f + 1) if n_frames is None or f + 1 < n_frames else None
            disclosed = None
            if sift.fields.get("status") == "ok":
                disclosed = await _disclose(ctx, f, symbols, sift.fields["nonce_b"])
            else:
                block.seen += 1  # aborted by Bob (capture checks)
            del symbols
            # Bob sends frame f's ESTIMATION and SYNDROME before he waits for f-1's VERIFY:
            # read them now and start decoding f, so that it overlaps the end of f-1's
            # decoding instead of waiting for it (the decoder is the pipeline's longest stage)
            nxt = await _receive_syndromes(ctx, block, disclosed) if disclosed else None
            del disclosed
            if nxt is not None:
                nxt.start(timer)
            if decoding is not None:
                await _send_verify(ctx, decoding)
                await _finish_frame(ctx, block, decoding)
                if block.n_total >= cfg.protocol.block_symbols:
                    await _end_block(ctx, block)
            decoding, nxt = nxt, None
            f += 1
        await ch.send(MsgType.PARAMS, {"end": 1, "frames": f})
        if decoding is not None:
            await _send_verify(ctx, decoding)
            await _finish_frame(ctx, block, decoding)
        if block.seen or block.index == 0:
            await _end_block(ctx, block)
    finally:  # aborted or done: the frame synthesised ahead is never sent
        for job in (pending, *(d.result for d in (decoding, nxt) if d is not None)):
            if job is not None:
                job.cancel()
    await ch.send(MsgType.PARAMS, {"done": 1})


def _check_frame(fields: dict, f: int) -> None:
    if fields.get("frame") != f:
        raise LinkAbort(AbortReason.PEER_LOST, f"message for frame {fields.get('frame')}, "
                        f"expected {f}")


async def _disclose(ctx: EndContext, f: int, symbols: np.ndarray, nonce_b: bytes) -> Disclosed:
    """Draw Alice's nonce, fix the PE subset with Bob's and send its x values."""
    nonce_a = os.urandom(NONCE_BYTES)
    idx = pe_indices(nonce_a, nonce_b, symbols.size, ctx.cfg.protocol.pe_fraction)
    x_pe = symbols[idx]
    await ctx.channel.send(MsgType.ESTIMATION, {"frame": f, "nonce_a": nonce_a, "x_pe": x_pe})
    return Disclosed(f, symbols, idx, x_pe)


async def _receive_syndromes(ctx: EndContext, block: BlockState,
                             d: Disclosed) -> Decoding | None:
    """Bob's ESTIMATION and SYNDROME of a disclosed frame -> its decoding job (not started),
    or None if Bob aborted the frame."""
    cfg, ch, timer, f = ctx.cfg, ctx.channel, ctx.timer, d.frame
    msg = await ch.recv(MsgType.ESTIMATION)
    _check_frame(msg.fields, f)
    y_pe = msg.fields.get("y_pe")
    if y_pe is not None:
        y_pe = np.asarray(y_pe, dtype=np.complex128)
        if y_pe.shape != d.idx.shape:
            raise LinkAbort(AbortReason.PEER_LOST, "PE values of the wrong size")
    if msg.fields.get("status") != "ok":
        block.seen += 1
        if y_pe is not None:  # rejected on its estimate: the PE pairs count in the block
            block.pe_rejected = block.pe_rejected + PeMoments.of(d.x_pe, y_pe)
        return None
    if y_pe is None or "v_el" not in msg.fields:
        raise LinkAbort(AbortReason.PEER_LOST, "ESTIMATION without PE values or v_el")
    v_el = float(msg.fields["v_el"])
    with timer.stage("estimation"):
        pe = PeMoments.of(d.x_pe, y_pe)
        est = estimate_moments(cfg, pe, v_el)
        try:  # Bob has passed the same checks on the same numbers
            check_estimate(cfg, est)
            ad = adapt(cfg, est)
        except LinkAbort as exc:
            raise LinkAbort(AbortReason.PEER_LOST, f"peer accepted a frame this end rejects "
                                                   f"({exc})") from None
    n = d.symbols.size
    mask = np.unpackbits(msg.fields["mask"], count=n).astype(bool)
    mask[d.idx] = False
    x = key_reals(d.symbols, np.flatnonzero(mask)) * est.t  # Bob's y = t x + z
    del mask
    code, carried, dim = ad.code, ad.transmitted.size, cfg.protocol.mdr_dimension
    syn = await ch.recv(MsgType.SYNDROME)
    _check_frame(syn.fields, f)
    n_cw = int(syn.fields["codewords"])
    alpha = np.asarray(syn.fields["alpha"], dtype=np.float64)
    norms = np.asarray(syn.fields["norms"], dtype=np.float64)
    syndrome = np.unpackbits(syn.fields["syndrome"], axis=1, count=code.m)
    if n_cw != x.size // carried or alpha.size != n_cw * carried or \
            norms.size != n_cw * carried // dim or syndrome.shape != (n_cw, code.m):
        raise LinkAbort(AbortReason.PEER_LOST, "reconciliation message of the wrong size")
    return Decoding(f, n, pe, v_el, ad, n_cw,
                    _decode_job(ctx, ad, x, alpha, norms, syndrome, est.sigma2, n_cw))


def _decode_job(ctx: EndContext, ad: Adaptation, x: np.ndarray, alpha: np.ndarray,
                norms: np.ndarray, syndrome: np.ndarray, sigma2: float,
                n_cw: int) -> Callable[[], DecodeResult]:
    """The thread body: MDR LLRs of every codeword, then the LDPC decoder."""
    code, carried, d = ad.code, ad.transmitted.size, ctx.cfg.protocol.mdr_dimension
    iters = decoder_iterations(ctx.cfg)

    def job() -> DecodeResult:
        llr = np.empty((n_cw, code.n), np.float32)
        for i in range(n_cw):
            s = slice(i * carried, (i + 1) * carried)
            t = mdr.alice_llr(x[s], alpha[s], norms[i * carried // d:(i + 1) * carried // d],
                              d, sigma2)
            llr[i] = rate_adapt.alice_llr(ad, t)
        return _decoder(ctx, ad).decode(llr, syndrome, iters, DECODER_THREADS)

    return job


def _decoder(ctx: EndContext, ad: Adaptation) -> Decoder:
    """The decoder of the frame's adaptation. The adaptation is in the LLRs (0 at punctured,
    +inf at shortened positions: `rate_adapt.alice_llr`), so when it adapts the session's mother
    code (the same graph), the mother code's decoder, built once per session, decodes it with
    the same decisions (tests/test_link_protocol.py) and saves building a decoder per frame
    (~0.1 s of a 242 000-bit code's graph preparation)."""
    mother = mother_code(ctx.cfg)
    if ad.code.var_idx is mother.var_idx and ad.code.check_ptr is mother.check_ptr:
        return decoder_for(mother)
    return decoder_for(ad.code)


async def _send_verify(ctx: EndContext, dec: Decoding) -> None:
    """Wait for the decoder, then send the frame's VERIFY (converged mask and tags)."""
    assert dec.result is not None
    res = await dec.result
    ctx.progress(f"frame {dec.frame}: decoded {int(res.converged.sum())}/{dec.n_cw} codewords, "
                 f"{float(res.iterations.mean()) if dec.n_cw else 0:.1f} iterations on average")
    free = _free(dec.ad)
    with ctx.timer.stage("verification"):
        await ctx.channel.send(MsgType.VERIFY, lambda keys: {
            "frame": dec.frame, "converged": np.packbits(res.converged.astype(np.uint8)),
            "tags": codeword_tags(keys, res.bits[:, free], res.converged)},
            app_keys=verify_keys_needed(dec.n_cw))


async def _finish_frame(ctx: EndContext, block: BlockState, dec: Decoding) -> None:
    """Bob's VERIFY answer: the verified codewords' bits join the block."""
    assert dec.result is not None
    res = dec.result.result()
    with ctx.timer.stage("verification"):
        reply = await ctx.channel.recv(MsgType.VERIFY)
        _check_frame(reply.fields, dec.frame)
        ok_cw = np.unpackbits(reply.fields["ok"], count=dec.n_cw).astype(bool) & res.converged
    block.leak_verify_bits += VERIFY_TAG_BITS * int(res.converged.sum())
    block.seen += 1
    good = int(ok_cw.sum())
    if good:
        block.add_frame(ctx.cfg, dec.frame, dec.n, dec.pe, dec.v_el,
                        res.bits[ok_cw][:, _free(dec.ad)], good, dec.n_cw, dec.ad)


def _free(ad: Adaptation) -> np.ndarray:
    """Mask of the code's bits that carry key (not shortened)."""
    free = np.ones(ad.code.n, bool)
    free[ad.code.shortened] = False
    return free


async def _end_block(ctx: EndContext, block: BlockState) -> None:
    msg = await ctx.channel.recv(MsgType.PA_SEED)
    if msg.fields.get("block") != block.index:
        raise LinkAbort(AbortReason.PEER_LOST, "PA seed for another block")
    auth_bits = int(msg.fields["auth_bits"])
    bb = block.bound(ctx.cfg, auth_bits)
    m = bb.pa.hash_output_bits if bb is not None else 0
    if int(msg.fields["m"]) != m:
        raise LinkAbort(AbortReason.PEER_LOST, f"peer's PA length {msg.fields['m']} differs "
                                               f"from this end's {m}")
    if m:
        key = await privacy_amplify(ctx, block, m, msg.fields["seed"])
        app, auth = split_key(key, m, auth_bits, ctx.cfg.protocol.key_bytes)
        await commit(ctx, app, auth, coordinator=True)
    block.reset(0)
