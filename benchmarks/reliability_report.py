"""Owns the reliability benchmark's report: the figures of ``benchmarks.reliability`` as the README's tables."""

from __future__ import annotations

import re
from typing import Any


def _busy(figures: dict[str, Any]) -> str:
    found = figures.get("ping_behind_busy_backlog")  # results written before it was measured lack it
    return "not measured" if found is None else f"{found['seconds']:.3f} s, {found['status']}"


def markdown(r: dict[str, Any]) -> str:
    f, ld, t, fa = r["fuzz"], r["load"], r["tarballs"], r["faults"]
    tp = ld["throughput"]
    bodies = f["in_process"]["tried"] + f["through_gunicorn"]["tried"] + f["through_chain"]["tried"]
    errors5 = f["in_process"]["server_errors"] + f["through_gunicorn"]["server_errors"] + f["through_chain"]["server_errors"]
    ours, peer = ld["ours"], ld["gunicorn sync"]
    one, two = ld["sigkill_worker_of_1"], ld["sigkill_worker_of_2"]
    refused = sum(x["refused"] and x["one_line"] for x in t.values())
    escaped = sum(bool(x["escaped"]) or bool(x["left_in_tmpdir"]) for x in t.values())
    rows = [
        ("bodies generated", f"{bodies:,} ({f['in_process']['tried']:,} in-process, {f['through_gunicorn']['tried']:,} "
                             f"through gunicorn, {f['through_chain']['tried']:,} through API -> Lambda -> endpoint)"),
        ("5xx answers", f"{errors5}"),
        ("worker restarts while fuzzed", f"{f['through_gunicorn']['worker_restarts']}"),
        (f"soak {ld['soak']['seconds']:.0f} s, 1- and 100-record bodies, 8 connections",
         f"{ld['soak']['requests']:,} requests, {ld['soak']['errors']} errors, worker RSS "
         f"{max(ld['soak']['rss_after_warmup_mb'].values()):.1f} MB after the warm-up, growth "
         f"{ld['soak']['growth_mb']:.1f} MB"),
        (f"SIGTERM with {ours['sigterm']['in_flight']} requests in flight",
         f"{ours['sigterm']['lost']} lost (gunicorn's sync worker: {peer['sigterm']['lost']} lost)"),
        ("/ping behind 4 stalled clients", f"{ours['ping_s_behind_4_stalled']:.3f} s (sync worker: "
                                           f"{peer['ping_s_behind_4_stalled']:.1f} s, SageMaker allows 2)"),
        ("/ping sent 0.2 s after connecting, behind 8 clients on one worker",
         f"{_busy(ours)} (sync worker: {_busy(peer)})"),
        ("one pinned worker, ours vs gunicorn's sync worker: req/s (worker CPU per request)",
         ", ".join(f"{rows}-record {tp[f'ours {rows}']['median_rps']:,.0f} ({tp[f'ours {rows}']['median_cpu_us']:,.0f} µs)"
                   f" vs {tp[f'gunicorn sync {rows}']['median_rps']:,.0f} ({tp[f'gunicorn sync {rows}']['median_cpu_us']:,.0f} µs)"
                   for rows in (1, 100))),
        ("SIGKILL of the only worker under load", f"replaced: {one['replaced']}, model loaded after "
         f"{one['replacement_loaded_s']} s, {one['failed']} of {one['requests']} requests failed ({one['clients']} "
         f"clients), /ping 200 before "
         f"it loaded: {one['ping_200_before_loaded']}"),
        ("SIGKILL of one of two workers", f"replaced: {two['replaced']}, {two['failed']} of {two['requests']} requests "
                                          f"failed ({two['clients']} clients)"),
        ("hostile tarballs", f"{refused} of {len(t)} refused in one line, /ping 503; {escaped} wrote outside TMPDIR "
                             f"or left files"),
        ("promote SIGKILLed after each step", f"{len(fa['promote'])} points; state consistent after the next "
         f"promotion: {sum(not p['final_problems'] for p in fa['promote'])} of {len(fa['promote'])}"),
        ("export SIGKILLed mid-write", f"old tarball intact: {fa['export']['tarball_after_kill'] is not None}; temp "
                                       f"file removed by the next export: {fa['export']['temp_after_next'] == 0}"),
        ("training SIGKILLed mid-trial, then resumed", f"{fa['training']['versions']} version registered, runs "
         f"{fa['training']['statuses']}, {len(fa['training']['killed'])} closed KILLED"),
    ]
    lines = ["| check | result |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows), "",
             "| promote killed after | production after the kill | next promotion said | consistent after |",
             "|---|---|---|---|"]
    for p in fa["promote"]:
        lines.append(f"| {p['point']} | version {p['production_after_kill']} | "
                     f"{(p['next_said'] or ['(nothing to finish)'])[0]} | {not p['final_problems']} |")
    run_info = r["run"]
    lines += ["", f"{run_info['mode']} run, {run_info['minutes']} min, {run_info['cpus']} CPUs, {run_info['date']}"]
    # The throwaway folder's path says nothing to a reader: the project's own paths are relative.
    return re.sub(r"/\S*/project/", "", "\n".join(lines)) + "\n"
