"""Bob, the receiver: captures, runs the DSP, estimates, encodes the reverse reconciliation
(his random words are the key), verifies, picks the privacy-amplification seed and
participates in the commit. While Alice decodes frame f-1, Bob captures, processes and
encodes frame f (two frames in flight); frame f-1's VERIFY follows frame f's SYNDROME.
Messages and their order: docs/protocol.md."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass

import numpy as np

from controller.framing import MsgType
from controller.link_end import (
    AUTH_UNIT_BITS,
    BlockState,
    EndContext,
    block_record,
    commit,
    privacy_amplify,
    split_key,
)
from controller.link_protocol import (
    NONCE_BYTES,
    VERIFY_TAG_BITS,
    AbortReason,
    LinkAbort,
    PeMoments,
    adapt,
    check_estimate,
    check_tags,
    config_digest,
    estimate_moments,
    key_reals,
    pe_indices,
)
from controller.link_quantum import Capture, ModelReceiver, calibrates_before
from controller.link_report import FrameRecord, LinkReport
from dsp.calibration import Calibration
from dsp.receiver import SyncError, receive
from reconcile import mdr, privacy_amp, rate_adapt
from reconcile.rate_adapt import Adaptation

COMMIT_MESSAGES = 11  # pool keys the block's end spends: PA_SEED + two commits (5 each)


def _status_abort(ctx: EndContext, cap: Capture) -> LinkAbort | None:
    st = cap.status
    if not st.lo_locked:
        return LinkAbort(AbortReason.LO_UNLOCK, "lock bit low")
    frac = st.clip_count / max(1, cap.iq.shape[0])
    if st.overflow or frac > ctx.cfg.protocol.clip_fraction_abort:
        return LinkAbort(AbortReason.SATURATION, f"{st.clip_count} clipped samples "
                         f"({frac:.2e} of the capture){', overflow' if st.overflow else ''}")
    return None


async def _reply_abort(ctx: EndContext, msg_type: MsgType, frame: int, abort: LinkAbort,
                       extra: dict | None = None) -> None:
    await ctx.channel.send(msg_type, {"frame": frame, "status": abort.reason.value,
                                      "detail": abort.detail[:200], **(extra or {})})


@dataclass
class Encoded:
    """A frame whose syndromes Bob has sent; his words wait for Alice's VERIFY, which comes
    after the next frame's PARAMS and ESTIMATION (the pipeline, docs/protocol.md)."""

    rec: FrameRecord
    pe: PeMoments
    v_el: float
    ad: Adaptation
    words: np.ndarray  # uint8 (codewords, n): Bob's random words (SECRET)


async def run_bob(ctx: EndContext, qc: ModelReceiver, report: LinkReport) -> None:
    cfg, ch = ctx.cfg, ctx.channel
    msg = await ch.recv(MsgType.PARAMS)
    same = msg.fields.get("config") == config_digest(cfg)
    await ch.send(MsgType.PARAMS, {"ok": int(same)})
    if not same:
        raise LinkAbort(AbortReason.CONFIG_MISMATCH)
    block = BlockState(pool_used_at_start=ctx.pool.stats().used_bits)
    cal: list[Calibration | None] = [None]  # the latest calibration (shot-, electronic-noise)
    waiting: Encoded | None = None
    while True:
        msg = await ch.recv(MsgType.PARAMS)
        if msg.fields.get("end") == 1:
            break
        rec, nxt = await _frame(ctx, qc, block, cal, int(msg.fields["frame"]),
                                json.loads(str(msg.fields["tx_meta"])))
        report.frames.append(rec)
        if waiting is not None:
            await _verify(ctx, block, waiting)
            if block.n_total >= cfg.protocol.block_symbols:
                await _end_block(ctx, block, report)
        waiting = nxt
    if waiting is not None:
        await _verify(ctx, block, waiting)
    if block.seen or block.index == 0:
        await _end_block(ctx, block, report)
    if (await ch.recv(MsgType.PARAMS)).fields.get("done") != 1:
        raise LinkAbort(AbortReason.PEER_LOST, "no end of session after the last block")


def _frame_aborted(ctx: EndContext, block: BlockState, rec: FrameRecord,
                   abort: LinkAbort) -> None:
    rec.reason, rec.detail = abort.reason.value, abort.detail
    block.seen += 1
    ctx.progress(f"frame {rec.frame}: aborted: {abort}")


async def _frame(ctx: EndContext, qc: ModelReceiver, block: BlockState,
                 cal: list[Calibration | None], f: int,
                 tx_meta: dict) -> tuple[FrameRecord, Encoded | None]:
    """Frame f up to its SYNDROME: calibration (on schedule), capture and its checks (SIFT),
    DSP and estimation (ESTIMATION), MDR encoding. None instead of the encoded frame when
    the frame aborted (reported in-band)."""
    cfg, ch, timer = ctx.cfg, ctx.channel, ctx.timer
    n = int(tx_meta["n_data"])
    rec = FrameRecord(frame=f, symbols=n, ok=False)
    em = await qc.next_emission(f, tx_meta)
    if calibrates_before(cfg, f):
        with timer.stage("calibrate"):
            records = await asyncio.to_thread(qc.calibrate, qc.capture_samples(em))
            cal[0] = Calibration(*records)
            del records
    with timer.stage("emit_capture"):
        cap = await asyncio.to_thread(qc.capture, em)
    del em
    ctx.progress(f"frame {f}: captured {cap.iq.shape[0]} samples "
                 f"({cap.status.clip_count} clipped)")
    abort = _status_abort(ctx, cap)
    nonce_b = os.urandom(NONCE_BYTES)
    if abort is not None:
        await _reply_abort(ctx, MsgType.SIFT, f, abort)
        _frame_aborted(ctx, block, rec, abort)
        return rec, None
    await ch.send(MsgType.SIFT, {"frame": f, "status": "ok", "nonce_b": nonce_b})
    msg = await ch.recv(MsgType.ESTIMATION)
    if msg.fields.get("frame") != f:
        raise LinkAbort(AbortReason.PEER_LOST, f"ESTIMATION for frame {msg.fields.get('frame')}"
                        f", expected {f}")
    idx = pe_indices(msg.fields["nonce_a"], nonce_b, n, cfg.protocol.pe_fraction)
    x_pe = np.asarray(msg.fields["x_pe"], dtype=np.complex128)
    if x_pe.shape != idx.shape:
        raise LinkAbort(AbortReason.PEER_LOST, "PE values of the wrong size")
    pe: PeMoments | None = None
    try:
        with timer.stage("dsp"):
            res = await asyncio.to_thread(
                receive, cap.iq, tx_meta, cap.capture_rate_hz, idx, x_pe, calibration=cal[0],
                eta=cfg.physics.eta, detection=cfg.modulation.detection, nco_hz=cap.nco_hz,
                if_hz=cap.if_hz)
        del cap
        ctx.progress(f"frame {f}: DSP recovered {res.summary['n_recovered']}/{n} symbols")
        v_el = float(res.summary["electronic_noise_snu"])
        y_pe = res.symbols[idx]
        if not np.all(res.mask[idx]):
            raise LinkAbort(AbortReason.SYNC_FAILURE, "PE symbols not recovered")
        with timer.stage("estimation"):
            pe = PeMoments.of(x_pe, y_pe)
            est = estimate_moments(cfg, pe, v_el)
            rec.xi, rec.xi_max, rec.snr = est.excess_noise, est.excess_noise_max, est.snr
            check_estimate(cfg, est)
            ad = adapt(cfg, est)
    except SyncError as exc:
        abort = LinkAbort(AbortReason.SYNC_FAILURE, exc.reason)
    except LinkAbort as exc:
        abort = exc
    else:
        abort = None
    if abort is not None:
        extra = None
        if pe is not None:  # rejected on its estimate: its PE pairs still count (no post-selection)
            block.pe_rejected = block.pe_rejected + pe
            extra = {"y_pe": y_pe}
        await _reply_abort(ctx, MsgType.ESTIMATION, f, abort, extra)
        _frame_aborted(ctx, block, rec, abort)
        return rec, None
    mask = res.mask.copy()
    await ch.send(MsgType.ESTIMATION, {"frame": f, "status": "ok", "y_pe": y_pe, "v_el": v_el,
                                       "mask": np.packbits(mask)})
    ctx.progress(f"frame {f}: T {est.transmittance:.4f}, xi {est.excess_noise:.4f} SNU "
                 f"(max {est.excess_noise_max:.4f}), SNR {est.snr:.4f}")
    # reverse reconciliation: Bob's random words are the key
    mask[idx] = False
    y = key_reals(res.symbols, np.flatnonzero(mask))
    del res, mask
    with timer.stage("reconciliation"):
        words, alpha, norms, syndrome = await asyncio.to_thread(
            _encode, ad, y, cfg.protocol.mdr_dimension)
    del y
    n_cw = words.shape[0]
    rec.code_rate, rec.codewords = ad.rate, n_cw
    await ch.send(MsgType.SYNDROME, {"frame": f, "alpha": alpha, "norms": norms,
                                     "syndrome": np.packbits(syndrome, axis=1),
                                     "codewords": n_cw})
    return rec, Encoded(rec, pe, v_el, ad, words)


def _encode(ad: Adaptation, y: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray,
                                                             np.ndarray, np.ndarray]:
    """Bob's MDR encoding of the key reals y (SNU): (words uint8 (codewords, n), alpha,
    norms, syndromes uint8 (codewords, m)); his words' free bits from os.urandom."""
    code, carried = ad.code, ad.transmitted.size
    n_cw = y.size // carried
    n_free = code.n - code.shortened.size
    words = np.stack([rate_adapt.bob_word(ad, mdr.random_bits(n_free))
                      for _ in range(n_cw)]) if n_cw else np.zeros((0, code.n), np.uint8)
    alpha = np.empty(n_cw * carried)
    norms = np.empty(n_cw * carried // d)
    for i in range(n_cw):
        a, nr = mdr.bob_encode(y[i * carried:(i + 1) * carried], words[i, ad.transmitted], d)
        alpha[i * carried:(i + 1) * carried] = a
        norms[i * carried // d:(i + 1) * carried // d] = nr
    syndrome = code.syndrome(words) if n_cw else np.zeros((0, code.m), np.uint8)
    return words, alpha, norms, syndrome


async def _verify(ctx: EndContext, block: BlockState, enc: Encoded) -> None:
    """Alice's VERIFY of an encoded frame: compare tags, answer, keep the verified words."""
    rec, n_cw, f = enc.rec, enc.words.shape[0], enc.rec.frame
    code = enc.ad.code
    free = np.ones(code.n, bool)
    free[code.shortened] = False
    vmsg = await ctx.channel.recv(MsgType.VERIFY)
    if vmsg.fields.get("frame") != f:
        raise LinkAbort(AbortReason.PEER_LOST, f"VERIFY for frame {vmsg.fields.get('frame')}, "
                        f"expected {f}")
    with ctx.timer.stage("verification"):
        tagged = np.unpackbits(vmsg.fields["converged"], count=n_cw).astype(bool)
        tags = np.asarray(vmsg.fields["tags"], dtype=np.uint8)
        if tags.shape != (n_cw, (VERIFY_TAG_BITS + 7) // 8):
            raise LinkAbort(AbortReason.PEER_LOST, "verification tags of the wrong size")
        ok_cw = check_tags(vmsg.app_keys, enc.words[:, free], tagged, tags)
    await ctx.channel.send(MsgType.VERIFY, {"frame": f,
                                            "ok": np.packbits(ok_cw.astype(np.uint8))})
    block.leak_verify_bits += VERIFY_TAG_BITS * int(tagged.sum())
    good = int(ok_cw.sum())
    rec.failed = n_cw - good
    if not good:
        _frame_aborted(ctx, block, rec, LinkAbort(AbortReason.VERIFICATION_FAILED,
                                                  f"0 of {n_cw} codewords decoded and verified"))
        return
    block.seen += 1
    rec.ok = True
    block.add_frame(ctx.cfg, f, rec.symbols, enc.pe, enc.v_el, enc.words[ok_cw][:, free], good,
                    n_cw, enc.ad)
    ctx.progress(f"frame {f}: {good}/{n_cw} codewords reconciled and verified "
                 f"(rate {enc.ad.rate:.4f})")


async def _end_block(ctx: EndContext, block: BlockState, report: LinkReport) -> None:
    """Bob decides the PA length (Alice recomputes and checks it) and picks the seed."""
    used = ctx.pool.stats().used_bits - block.pool_used_at_start
    auth_bits = -(-(used + COMMIT_MESSAGES * AUTH_UNIT_BITS) // AUTH_UNIT_BITS) * AUTH_UNIT_BITS
    bb = block.bound(ctx.cfg, auth_bits)
    rec = block_record(block, bb)
    report.blocks.append(rec)
    m = bb.pa.hash_output_bits if bb is not None else 0
    if m == 0:
        await ctx.channel.send(MsgType.PA_SEED, {"block": block.index, "m": 0,
                                                 "auth_bits": auth_bits})
        if bb is not None:
            rec.reason = AbortReason.NO_FINITE_SIZE_KEY.value
            rec.detail = (f"no key: finite-size bound {bb.bits_per_symbol:.4f} bits per key "
                          f"symbol at N = {block.n_total} symbols")
        ctx.progress(f"block {block.index}: {rec.detail}")
    else:
        n_in = rec.hash_input_bits
        seed = privacy_amp.new_seed(n_in, m)
        await ctx.channel.send(MsgType.PA_SEED, {"block": block.index, "m": m,
                                                 "auth_bits": auth_bits, "seed": seed})
        key = await privacy_amplify(ctx, block, m, seed)
        app, auth = split_key(key, m, auth_bits, ctx.cfg.protocol.key_bytes)
        await commit(ctx, app, auth, coordinator=False)
        rec.ok = True
        rec.secret_bits = 8 * sum(len(k) for k in app)
        rec.auth_refill_bits = 8 * sum(len(k) for k in auth)
        ctx.progress(f"block {block.index}: {rec.secret_bits} secret bits committed "
                     f"(+{rec.auth_refill_bits} authentication refill)")
    block.reset(ctx.pool.stats().used_bits)
