"""Bob, the receiver: captures, runs the DSP, estimates, encodes the reverse reconciliation
(his random words are the key), verifies, picks the privacy-amplification seed and
participates in the commit. Messages and their order: docs/protocol.md."""

from __future__ import annotations

import asyncio
import json
import os

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
    adapt,
    check_estimate,
    check_tags,
    config_digest,
    estimate,
    key_reals,
    pe_indices,
)
from controller.link_quantum import Capture, ModelReceiver, calibrates_before
from controller.link_report import FrameRecord, LinkReport
from dsp.receiver import SyncError, receive
from reconcile import mdr, privacy_amp, rate_adapt

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


async def run_bob(ctx: EndContext, qc: ModelReceiver, report: LinkReport) -> None:
    cfg, ch, timer = ctx.cfg, ctx.channel, ctx.timer
    msg = await ch.recv(MsgType.PARAMS)
    same = msg.fields.get("config") == config_digest(cfg)
    await ch.send(MsgType.PARAMS, {"ok": int(same)})
    if not same:
        raise LinkAbort(AbortReason.CONFIG_MISMATCH)
    block = BlockState(pool_used_at_start=ctx.pool.stats().used_bits)
    shot = elec = None
    while True:
        msg = await ch.recv(MsgType.PARAMS)
        if msg.fields.get("done") == 1:
            return
        f = int(msg.fields["frame"])
        last = msg.fields.get("last") == 1
        tx_meta = json.loads(str(msg.fields["tx_meta"]))
        n = int(tx_meta["n_data"])
        em = await qc.next_emission(f, tx_meta)
        if calibrates_before(cfg, f):
            with timer.stage("calibrate"):
                shot, elec = await asyncio.to_thread(qc.calibrate, qc.capture_samples(em))
        with timer.stage("emit_capture"):
            cap = await asyncio.to_thread(qc.capture, em)
        del em
        rec = FrameRecord(frame=f, symbols=n, ok=False)
        report.frames.append(rec)
        ctx.progress(f"frame {f}: captured {cap.iq.shape[0]} samples "
                     f"({cap.status.clip_count} clipped)")
        abort = _status_abort(ctx, cap)
        nonce_b = os.urandom(NONCE_BYTES)
        if abort is not None:
            await _reply_abort(ctx, MsgType.SIFT, f, abort)
            _frame_aborted(ctx, rec, abort)
        else:
            await ch.send(MsgType.SIFT, {"frame": f, "status": "ok", "nonce_b": nonce_b})
            await _frame(ctx, rec, block, cap, shot, elec, tx_meta, nonce_b)
        if last or block.n_total >= cfg.protocol.block_symbols:
            await _end_block(ctx, block, report)


def _frame_aborted(ctx: EndContext, rec: FrameRecord, abort: LinkAbort) -> None:
    rec.reason, rec.detail = abort.reason.value, abort.detail
    ctx.progress(f"frame {rec.frame}: aborted: {abort}")


async def _frame(ctx: EndContext, rec: FrameRecord, block: BlockState, cap: Capture,
                 shot: np.ndarray | None, elec: np.ndarray | None, tx_meta: dict,
                 nonce_b: bytes) -> None:
    cfg, ch, timer, f = ctx.cfg, ctx.channel, ctx.timer, rec.frame
    n = rec.symbols
    msg = await ch.recv(MsgType.ESTIMATION)
    idx = pe_indices(msg.fields["nonce_a"], nonce_b, n, cfg.protocol.pe_fraction)
    x_pe = np.asarray(msg.fields["x_pe"], dtype=np.complex128)
    if x_pe.shape != idx.shape:
        raise LinkAbort(AbortReason.PEER_LOST, "PE values of the wrong size")
    try:
        with timer.stage("dsp"):
            res = await asyncio.to_thread(
                receive, cap.iq, tx_meta, cap.capture_rate_hz, idx, x_pe, shot, elec,
                eta=cfg.physics.eta, detection=cfg.modulation.detection, nco_hz=cap.nco_hz,
                if_hz=cap.if_hz)
        del cap
        ctx.progress(f"frame {f}: DSP recovered {res.summary['n_recovered']}/{n} symbols")
        v_el = float(res.summary["electronic_noise_snu"])
        y_pe = res.symbols[idx]
        if not np.all(res.mask[idx]):
            raise LinkAbort(AbortReason.SYNC_FAILURE, "PE symbols not recovered")
        with timer.stage("estimation"):
            est = estimate(cfg, x_pe, y_pe, v_el)
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
        await _reply_abort(ctx, MsgType.ESTIMATION, f, abort)
        _frame_aborted(ctx, rec, abort)
        return
    mask = res.mask.copy()
    await ch.send(MsgType.ESTIMATION, {"frame": f, "status": "ok", "y_pe": y_pe, "v_el": v_el,
                                       "mask": np.packbits(mask)})
    ctx.progress(f"frame {f}: T {est.transmittance:.4f}, xi {est.excess_noise:.4f} SNU "
                 f"(max {est.excess_noise_max:.4f}), SNR {est.snr:.4f}")
    # reverse reconciliation: Bob's random words are the key
    mask[idx] = False
    y = key_reals(res.symbols, np.flatnonzero(mask))
    del res
    code, carried, d = ad.code, ad.transmitted.size, cfg.protocol.mdr_dimension
    n_cw = y.size // carried
    rec.code_rate, rec.codewords = ad.rate, n_cw
    free = np.ones(code.n, bool)
    free[code.shortened] = False
    with timer.stage("reconciliation"):
        words = np.stack([rate_adapt.bob_word(ad, mdr.random_bits(int(free.sum())))
                          for _ in range(n_cw)]) if n_cw else np.zeros((0, code.n), np.uint8)
        alpha = np.empty(n_cw * carried)
        norms = np.empty(n_cw * carried // d)
        for i in range(n_cw):
            a, nr = mdr.bob_encode(y[i * carried:(i + 1) * carried], words[i, ad.transmitted], d)
            alpha[i * carried:(i + 1) * carried] = a
            norms[i * carried // d:(i + 1) * carried // d] = nr
        syndrome = code.syndrome(words) if n_cw else np.zeros((0, code.m), np.uint8)
    del y
    await ch.send(MsgType.SYNDROME, {"frame": f, "alpha": alpha, "norms": norms,
                                     "syndrome": np.packbits(syndrome, axis=1),
                                     "codewords": n_cw})
    vmsg = await ch.recv(MsgType.VERIFY)
    with timer.stage("verification"):
        tagged = np.unpackbits(vmsg.fields["converged"], count=n_cw).astype(bool)
        tags = np.asarray(vmsg.fields["tags"], dtype=np.uint8)
        if tags.shape != (n_cw, (VERIFY_TAG_BITS + 7) // 8):
            raise LinkAbort(AbortReason.PEER_LOST, "verification tags of the wrong size")
        ok_cw = check_tags(vmsg.app_keys, words[:, free], tagged, tags)
    await ch.send(MsgType.VERIFY, {"frame": f, "ok": np.packbits(ok_cw.astype(np.uint8))})
    block.leak_verify_bits += VERIFY_TAG_BITS * int(tagged.sum())
    rec.failed = n_cw - int(ok_cw.sum())
    if not ok_cw.any():
        _frame_aborted(ctx, rec, LinkAbort(AbortReason.VERIFICATION_FAILED,
                                           f"0 of {n_cw} codewords decoded and verified"))
        return
    kept = words[ok_cw][:, free]
    rec.ok = True
    block.frames.append(f)
    block.n_total += n
    block.pe_x.append(x_pe)
    block.pe_y.append(y_pe)
    block.v_el = v_el
    block.words.append(kept.reshape(-1))
    per_sym = 2 if cfg.modulation.detection == "heterodyne" else 1
    block.n_decoded += int(ok_cw.sum()) * carried // per_sym
    block.net_bits += int(ok_cw.sum()) * (code.n - code.m - code.shortened.size)
    block.codewords += n_cw
    block.failed += rec.failed
    ctx.progress(f"frame {f}: {n_cw - rec.failed}/{n_cw} codewords reconciled and verified "
                 f"(rate {ad.rate:.4f})")


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
