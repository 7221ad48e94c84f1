"""Alice, the transmitter: draws secret Gaussian symbols (ChaCha20 keyed from the OS CSPRNG),
emits the frame, discloses the PE subset, decodes Bob's reverse reconciliation, sends the
verification tag, recomputes Bob's privacy-amplification length and coordinates the commit.
Messages and their order: docs/protocol.md."""

from __future__ import annotations

import asyncio
import json
import os

import numpy as np

from controller.framing import MsgType
from controller.link_end import BlockState, EndContext, commit, privacy_amplify, split_key
from controller.link_protocol import (
    NONCE_BYTES,
    VERIFY_TAG_BITS,
    AbortReason,
    LinkAbort,
    adapt,
    check_estimate,
    codeword_tags,
    config_digest,
    estimate,
    key_reals,
    pe_indices,
    verify_keys_needed,
)
from controller.link_quantum import Emission, Transmitter
from dsp.transmitter import TxConfig, build_frame
from reconcile import mdr, rate_adapt
from reconcile.ldpc_decoder import decoder_for

# Decoder threads: each takes groups of 8 codewords (one SIMD vector); the results do not
# depend on the count. Two: the cores of the target machine.
DECODER_THREADS = min(2, os.cpu_count() or 1)


def tx_config(ctx: EndContext, qc: Transmitter) -> TxConfig:
    m = ctx.cfg.modulation
    return TxConfig(sample_rate_hz=qc.player_sps, symbol_rate_hz=m.symbol_rate_hz, v_a=m.v_a,
                    dac_bits=qc.dac_bits)


async def run_alice(ctx: EndContext, qc: Transmitter, n_frames: int) -> None:
    cfg, ch, timer = ctx.cfg, ctx.channel, ctx.timer
    await ch.send(MsgType.PARAMS, {"config": config_digest(cfg)})
    if (await ch.recv(MsgType.PARAMS)).fields.get("ok") != 1:
        raise LinkAbort(AbortReason.CONFIG_MISMATCH)
    tx = tx_config(ctx, qc)
    n = cfg.protocol.frame_symbols
    block = BlockState()

    def synthesise(f: int) -> asyncio.Future:
        """Frame f's waveform on a worker thread (its ChaCha20 key drawn now from the OS
        CSPRNG), so that it overlaps the reconciliation of the frame before."""
        return asyncio.ensure_future(asyncio.to_thread(build_frame, tx, n, os.urandom(32), f))

    pending = synthesise(0) if n_frames > 0 else None
    try:
        for f in range(n_frames):
            last = f == n_frames - 1
            with timer.stage("emit_capture"):
                frame = await pending
            pending = None if last else synthesise(f + 1)
            timing = await qc.emit(Emission(f, frame.iq_int16, frame.meta["quad_per_lsb"],
                                            frame.meta))
            await ch.send(MsgType.PARAMS, {"frame": f, "last": int(last),
                                           "tx_meta": json.dumps({**frame.meta, **timing})})
            symbols = frame.symbols
            del frame
            sift = await ch.recv(MsgType.SIFT)
            _check_frame(sift.fields, f)
            if sift.fields.get("status") == "ok":
                await _frame(ctx, block, f, symbols, sift.fields["nonce_b"])
            del symbols
            if last or block.n_total >= cfg.protocol.block_symbols:
                await _end_block(ctx, block)
    finally:
        if pending is not None:  # aborted: the frame being synthesised is never sent
            pending.cancel()
    await ch.send(MsgType.PARAMS, {"done": 1})


def _check_frame(fields: dict, f: int) -> None:
    if fields.get("frame") != f:
        raise LinkAbort(AbortReason.PEER_LOST, f"message for frame {fields.get('frame')}, "
                        f"expected {f}")


async def _frame(ctx: EndContext, block: BlockState, f: int, symbols: np.ndarray,
                 nonce_b: bytes) -> None:
    cfg, ch, timer = ctx.cfg, ctx.channel, ctx.timer
    n = symbols.size
    nonce_a = os.urandom(NONCE_BYTES)
    idx = pe_indices(nonce_a, nonce_b, n, cfg.protocol.pe_fraction)
    x_pe = symbols[idx]
    await ch.send(MsgType.ESTIMATION, {"frame": f, "nonce_a": nonce_a, "x_pe": x_pe})
    msg = await ch.recv(MsgType.ESTIMATION)
    _check_frame(msg.fields, f)
    if msg.fields.get("status") != "ok":
        return
    y_pe = np.asarray(msg.fields["y_pe"], dtype=np.complex128)
    v_el = float(msg.fields["v_el"])
    if y_pe.shape != idx.shape:
        raise LinkAbort(AbortReason.PEER_LOST, "PE values of the wrong size")
    with timer.stage("estimation"):
        est = estimate(cfg, x_pe, y_pe, v_el)
        try:  # Bob has passed the same checks on the same numbers
            check_estimate(cfg, est)
            ad = adapt(cfg, est)
        except LinkAbort as exc:
            raise LinkAbort(AbortReason.PEER_LOST, f"peer accepted a frame this end rejects "
                                                   f"({exc})") from None
    mask = np.unpackbits(msg.fields["mask"], count=n).astype(bool)
    mask[idx] = False
    x = key_reals(symbols, np.flatnonzero(mask)) * est.t  # Bob's y = t x + z
    code, carried, d = ad.code, ad.transmitted.size, cfg.protocol.mdr_dimension
    syn = await ch.recv(MsgType.SYNDROME)
    _check_frame(syn.fields, f)
    n_cw = int(syn.fields["codewords"])
    alpha = np.asarray(syn.fields["alpha"], dtype=np.float64)
    norms = np.asarray(syn.fields["norms"], dtype=np.float64)
    syndrome = np.unpackbits(syn.fields["syndrome"], axis=1, count=code.m)
    if n_cw != x.size // carried or alpha.size != n_cw * carried or \
            norms.size != n_cw * carried // d or syndrome.shape != (n_cw, code.m):
        raise LinkAbort(AbortReason.PEER_LOST, "reconciliation message of the wrong size")
    with timer.stage("reconciliation"):
        llr = np.empty((n_cw, code.n), np.float32)
        for i in range(n_cw):
            s = slice(i * carried, (i + 1) * carried)
            t = mdr.alice_llr(x[s], alpha[s], norms[i * carried // d:(i + 1) * carried // d],
                              d, est.sigma2)
            llr[i] = rate_adapt.alice_llr(ad, t)
        del x
        res = await asyncio.to_thread(decoder_for(code).decode, llr, syndrome,
                                      cfg.protocol.decoder_iterations, DECODER_THREADS)
        del llr
    ctx.progress(f"frame {f}: decoded {int(res.converged.sum())}/{n_cw} codewords, "
                 f"{float(res.iterations.mean()) if n_cw else 0:.1f} iterations on average")
    free = np.ones(code.n, bool)
    free[code.shortened] = False
    with timer.stage("verification"):
        await ch.send(MsgType.VERIFY, lambda keys: {
            "frame": f, "converged": np.packbits(res.converged.astype(np.uint8)),
            "tags": codeword_tags(keys, res.bits[:, free], res.converged)},
            app_keys=verify_keys_needed(n_cw))
        reply = await ch.recv(MsgType.VERIFY)
        _check_frame(reply.fields, f)
        ok_cw = np.unpackbits(reply.fields["ok"], count=n_cw).astype(bool) & res.converged
    block.leak_verify_bits += VERIFY_TAG_BITS * int(res.converged.sum())
    if not ok_cw.any():
        return
    kept = res.bits[ok_cw][:, free].reshape(-1)
    good = int(ok_cw.sum())
    block.frames.append(f)
    block.n_total += n
    block.pe_x.append(x_pe)
    block.pe_y.append(y_pe)
    block.v_el = v_el
    block.words.append(kept)
    per_sym = 2 if cfg.modulation.detection == "heterodyne" else 1
    block.n_decoded += good * carried // per_sym
    block.net_bits += good * (code.n - code.m - code.shortened.size)
    block.codewords += n_cw
    block.failed += n_cw - good


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
