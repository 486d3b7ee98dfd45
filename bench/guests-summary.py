#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
"""bench/guests' summary: samples -> table (stdout), JSON, gnuplot data.

guests-summary.py SAMPLES JSON DAT "BYTES..." ROUNDS "COLUMNS..." NOTE
SAMPLES lines: "pp COL ROUND BYTES T_USEC MBPS" and
"cnt COL ROUND before|after VM key=value ...".  Ratios are per round (the
same two guests, minutes apart) and then the median over the rounds.
Exit 1 when a column has no number for a size (every run must produce one).
"""
import json
import statistics as st
import sys
from collections import defaultdict

path, out_json, out_dat, sizes_s, rounds_s, cols_s, note = sys.argv[1:8]
sizes = [int(x) for x in sizes_s.split()]
rounds = int(rounds_s)
ALL = ["tcp", "ntcp", "nverbs", "lat", "bw", "tcps", "ntcps", "nverbss", "sbw"]
COLS = [c for c in ALL if c in cols_s.split()]     # the columns this run ran
NAMES = {"tcp": "btl/tcp", "ntcp": "ninja TCP rail", "nverbs": "ninja verbs rail",
         "lat": "ib_send_lat", "bw": "ib_write_bw",
         "tcps": "btl/tcp stream", "ntcps": "ninja TCP rail stream",
         "nverbss": "ninja verbs rail stream", "sbw": "ib_send_bw"}
pp = {}                         # (col, round, bytes) -> (t_usec, MB/s)
cnt = defaultdict(dict)         # (col, round, phase) -> {key: sum over guests}
for line in open(path):
    w = line.split()
    if w[0] == "pp":
        pp[(w[1], int(w[2]), int(w[3]))] = (float(w[4]), float(w[5]))
    elif w[0] == "cnt":
        d = cnt[(w[1], int(w[2]), w[3])]
        for kv in w[5:]:
            k, _, v = kv.partition("=")
            if v.isdigit():
                d[k] = d.get(k, 0) + int(v)


def med(v):
    return st.median(v) if v else None


def ratio(a, b, b_, idx, inv=False):
    """Median over rounds of col a / col b (idx 1: MB/s, 0: t)."""
    v = []
    for r in range(1, rounds + 1):
        x, y = pp.get((a, r, b_)), pp.get((b, r, b_))
        if x and y and x[idx] > 0 and y[idx] > 0:
            v.append(x[idx] / y[idx])
    return med(v)


missing = [f"{NAMES[c]} at {b} B round {r}" for c in COLS for b in sizes
           for r in range(1, rounds + 1) if (c, r, b) not in pp]
rows = []
for b in sizes:
    row = {"bytes": b}
    for c in ALL:
        t = [pp[(c, r, b)][0] for r in range(1, rounds + 1) if (c, r, b) in pp]
        m = [pp[(c, r, b)][1] for r in range(1, rounds + 1) if (c, r, b) in pp]
        row[c] = {"t_usec_median": med(t), "mbps_median": med(m), "t_usec": t, "mbps": m}
    row["ratio_tcp_rail_vs_btl_tcp_mbps"] = ratio("ntcp", "tcp", b, 1)
    row["ratio_verbs_rail_vs_write_bw_mbps"] = ratio("nverbs", "bw", b, 1)
    row["ratio_verbs_rail_vs_send_lat_t"] = ratio("nverbs", "lat", b, 0)
    row["ratio_tcp_rail_stream_vs_btl_tcp_stream_mbps"] = ratio("ntcps", "tcps", b, 1)
    row["ratio_verbs_rail_stream_vs_write_bw_mbps"] = ratio("nverbss", "bw", b, 1)
    row["ratio_verbs_rail_stream_vs_send_bw_mbps"] = ratio("nverbss", "sbw", b, 1)
    rows.append(row)

counters = {}
for c in COLS:
    per = defaultdict(list)
    for r in range(1, rounds + 1):
        a, z = cnt.get((c, r, "before")), cnt.get((c, r, "after"))
        if a and z:
            for k in z:
                if k in a:
                    per[k].append(z[k] - a[k])
        # reached the guest's fabric tap (host side) but not rxe
        if a and z and all(k in a and k in z for k in ("tap_tx_pkts", "rcvd_pkts")):
            per["lost_tap_to_rxe"].append((z["tap_tx_pkts"] - a["tap_tx_pkts"]) -
                                          (z["rcvd_pkts"] - a["rcvd_pkts"]))
    counters[c] = {k: med(v) for k, v in per.items()}


def f(x, fmt):
    return fmt % x if x is not None else "-"


print("bench/guests: %s" % note)
print("same-run ratios, median of %d round(s); MB/s = 10^6 B/s (perftest's MiB/s converted)" % rounds)
print("%9s | %8s %8s %6s | %8s %8s %6s | %9s %9s %6s" % (
    "bytes", "tcp MB/s", "rail", "rail/", "verbs", "write_bw", "verbs/",
    "verbs us", "send_lat", "verbs/"))
print("%9s | %8s %8s %6s | %8s %8s %6s | %9s %9s %6s" % (
    "", "btl/tcp", "TCP", "tcp", "MB/s", "MB/s", "wr_bw", "", "us", "s_lat"))
for row in rows if any(c in COLS for c in ALL[:4]) else []:
    print("%9d | %8s %8s %6s | %8s %8s %6s | %9s %9s %6s" % (
        row["bytes"], f(row["tcp"]["mbps_median"], "%.4g"), f(row["ntcp"]["mbps_median"], "%.4g"),
        f(row["ratio_tcp_rail_vs_btl_tcp_mbps"], "%.2f"),
        f(row["nverbs"]["mbps_median"], "%.4g"), f(row["bw"]["mbps_median"], "%.4g"),
        f(row["ratio_verbs_rail_vs_write_bw_mbps"], "%.2f"),
        f(row["nverbs"]["t_usec_median"], "%.1f"), f(row["lat"]["t_usec_median"], "%.1f"),
        f(row["ratio_verbs_rail_vs_send_lat_t"], "%.2f")))
if any(c in COLS for c in ALL[5:]):
    print("streams (examples/stream, window of up to 64; perftest's bandwidth tests), MB/s")
    print("%9s : %8s %8s %6s | %8s %8s %8s %6s %6s" % (
        "bytes", "btl/tcp", "TCP rail", "rail/", "verbs", "write_bw", "send_bw", "verbs/", "verbs/"))
    print("%9s : %8s %8s %6s | %8s %8s %8s %6s %6s" % (
        "", "stream", "stream", "tcp", "stream", "", "", "wr_bw", "s_bw"))
    for row in rows:
        print("%9d : %8s %8s %6s | %8s %8s %8s %6s %6s" % (
            row["bytes"], f(row["tcps"]["mbps_median"], "%.4g"), f(row["ntcps"]["mbps_median"], "%.4g"),
            f(row["ratio_tcp_rail_stream_vs_btl_tcp_stream_mbps"], "%.2f"),
            f(row["nverbss"]["mbps_median"], "%.4g"), f(row["bw"]["mbps_median"], "%.4g"),
            f(row["sbw"]["mbps_median"], "%.4g"),
            f(row["ratio_verbs_rail_stream_vs_write_bw_mbps"], "%.2f"),
            f(row["ratio_verbs_rail_stream_vs_send_bw_mbps"], "%.2f")))
keys = ["tcp_retrans", "completer_retry_err", "rcvd_seq_err", "duplicate_request",
        "out_of_seq_request", "rcvd_rnr_err", "send_rnr_err", "sent_pkts",
        "lost_tap_to_rxe", "hca0_rx_drop", "softnet_drop"]
print("counters per run (both guests, median of rounds): " + " ".join(keys))
for c in COLS:
    print("%24s: %s" % (NAMES[c], " ".join(f(counters[c].get(k), "%d") for k in keys)))

with open(out_dat, "w") as d:
    d.write("# bytes r_tcp r_bw r_lat tcp ntcp nverbs lat bw tcps ntcps nverbss sbw"
            " r_tcps r_sbw_wr r_sbw_s\n")
    for row in rows:
        v = [row["ratio_tcp_rail_vs_btl_tcp_mbps"], row["ratio_verbs_rail_vs_write_bw_mbps"],
             row["ratio_verbs_rail_vs_send_lat_t"]] + [row[c]["mbps_median"] for c in ALL] + [
             row["ratio_tcp_rail_stream_vs_btl_tcp_stream_mbps"],
             row["ratio_verbs_rail_stream_vs_write_bw_mbps"],
             row["ratio_verbs_rail_stream_vs_send_bw_mbps"]]
        d.write("%d %s\n" % (row["bytes"], " ".join("NaN" if x is None else "%.4f" % x for x in v)))
with open(out_json, "w") as j:
    json.dump({"benchmark": "bench/guests", "note": note, "rounds": rounds, "ran": COLS,
               "statistic": "per-round ratio, median over rounds",
               "columns": {c: NAMES[c] for c in COLS}, "results": rows, "counters_per_run_median": counters,
               "missing": missing}, j, indent=1)
if missing:
    print("bench/guests: missing numbers: " + "; ".join(missing), file=sys.stderr)
    sys.exit(1)
