#!/usr/bin/env python3
"""Accuracy of driftmirror.dm_forecast on forecast evaluation cases.

Called by bench/forecast_accuracy with a running server.  For every case of
CASES_DIR/manifest.csv and every method, sends the training values to
dm_forecast over psql (seasons: the case's periods rounded, those longer
than half the training window left out), scores the forecast against the
test values as the cases' README defines (MASE against the in-sample
seasonal naive at lag m, sMAPE, share of test points inside the 80 and 95
percent intervals; each case weighs the same) and prints the figures per
method beside the baselines found in CASES_DIR/../README.md.

"fit ms" is the server-side time of the statement as psql's \\timing reports
it (fit + forecast + the transfer of a few kilobytes over loopback).

Only the standard library; psql must be on PATH.
"""
import argparse
import csv
import os
import re
import statistics
import subprocess
import sys

METHODS = ["snaive", "hw", "mstl", "arima", "prophet", "theta", "auto"]


def read_values(path):
    with open(path, newline="") as f:
        return [float(r["value"]) for r in csv.DictReader(f)]


def load_cases(cases_dir):
    out = []
    with open(os.path.join(cases_dir, "manifest.csv"), newline="") as f:
        for r in csv.DictReader(f):
            train = read_values(os.path.join(cases_dir, r["train_file"]))
            test = read_values(os.path.join(cases_dir, r["test_file"]))
            periods = [int(round(float(p))) for p in r["periods"].split(";") if p]
            seasons = sorted({p for p in periods if 1 < p <= len(train) // 2})
            out.append({"id": r["case_id"], "m": int(r["m"]), "h": int(r["h"]),
                        "train": train, "test": test[: int(r["h"])],
                        "seasons": seasons})
    return out


def run_method(args, cases, method):
    """One psql session per method; returns {case_id: (rows, ms, notices)}."""
    script = ["\\set ON_ERROR_STOP 0", "\\pset footer off",
              # the server process's CPU time (user + system ticks), before
              # and after: a figure that the load of the machine leaves alone
              "SELECT pg_backend_pid() AS dm_pid \\gset",
              "\\setenv DM_PID :dm_pid",
              "\\! echo @@cpu $(cut -d' ' -f14,15 /proc/$DM_PID/stat)",
              "\\timing on"]
    for c in cases:
        vals = ",".join(repr(v) for v in c["train"])
        seas = ",".join(str(s) for s in c["seasons"])
        script.append("\\echo @@case %s" % c["id"])
        script.append(
            "SELECT step, yhat, lo80, hi80, lo95, hi95 FROM driftmirror.dm_forecast("
            "'{%s}'::float8[], '{%s}'::int[], %d, '%s');" % (vals, seas, c["h"], method))
    proc = subprocess.run(
        ["psql", "-X", "-q", "-A", "-t", "-F", ",", "-h", args.host, "-p", str(args.port),
         "-U", args.user, "-d", args.dbname],
        input="\n".join(script + ["\\timing off",
                                   "\\! echo @@cpu $(cut -d' ' -f14,15 /proc/$DM_PID/stat)"])
        + "\n", capture_output=True, text=True, check=False)
    res = {}
    cur = None
    ticks = []
    for line in proc.stdout.splitlines():
        if line.startswith("@@cpu "):
            f = line.split()[1:]
            ticks.append(sum(int(x) for x in f) if len(f) == 2 else None)
            continue
        if line.startswith("@@case "):
            cur = line.split(" ", 1)[1]
            res[cur] = {"rows": [], "ms": None}
        elif line.startswith("Time: ") and cur:
            res[cur]["ms"] = float(line.split()[1])
        elif cur and line and line[0].isdigit():
            res[cur]["rows"].append([float(x) for x in line.split(",")])
    errors = [l for l in proc.stderr.splitlines() if l.startswith(("ERROR", "psql:"))]
    if len(ticks) == 2 and None not in ticks and cases:
        res["@cpu_ms_per_case"] = (ticks[1] - ticks[0]) * 1000.0 / os.sysconf("SC_CLK_TCK") / len(cases)
    return res, errors


def score(c, rows):
    train, test, m = c["train"], c["test"], c["m"]
    scale = sum(abs(train[t] - train[t - m]) for t in range(m, len(train))) / (len(train) - m)
    h = len(test)
    ae = [abs(test[k] - rows[k][1]) for k in range(h)]
    smape = [200 * abs(test[k] - rows[k][1]) / (abs(test[k]) + abs(rows[k][1]))
             if abs(test[k]) + abs(rows[k][1]) > 0 else 0.0 for k in range(h)]
    in80 = [rows[k][2] <= test[k] <= rows[k][3] for k in range(h)]
    in95 = [rows[k][4] <= test[k] <= rows[k][5] for k in range(h)]
    return {"mase": sum(ae) / h / scale, "smape": sum(smape) / h,
            "c80": sum(in80) / h, "c95": sum(in95) / h}


def method_row(args, cases, method, label, cpu=False, ms_fmt="%.0f"):
    """Run one method over the cases; returns (table row, every case ok).

    The row: label, cases ok/run, mean and median MASE, mean sMAPE, 80 and
    95 percent coverage, median statement ms, [server CPU ms per case,]
    total statement seconds.
    """
    res, errors = run_method(args, cases, method)
    scores, times = [], []
    for c in cases:
        r = res.get(c["id"])
        if not r or len(r["rows"]) < len(c["test"]):
            continue
        s = score(c, r["rows"])
        scores.append(s)
        if r["ms"] is not None:
            times.append(r["ms"])
        if args.verbose:
            print("  %-8s %-30s MASE %.3f  cov95 %.2f  %.1f ms"
                  % (method, c["id"], s["mase"], s["c95"], r["ms"] or 0), file=sys.stderr)
    for e in errors:
        print("  %s: %s" % (method, e), file=sys.stderr)
    ncols = 9 if cpu else 8
    if not scores:
        return "| %s | 0/%d |%s" % (label, len(cases), " |" * (ncols - 1)), False
    mase = [s["mase"] for s in scores]
    cells = [label, "%d/%d" % (len(scores), len(cases)),
             "%.3f" % statistics.mean(mase), "%.3f" % statistics.median(mase),
             "%.2f" % statistics.mean(s["smape"] for s in scores),
             "%.2f" % statistics.mean(s["c80"] for s in scores),
             "%.2f" % statistics.mean(s["c95"] for s in scores),
             ms_fmt % (statistics.median(times) if times else 0)]
    if cpu:
        c = res.get("@cpu_ms_per_case")
        cells.append("%.1f" % c if c is not None else "–")
    cells.append("%.1f" % (sum(times) / 1000))
    return "| " + " | ".join(cells) + " |", len(scores) == len(cases)


def baselines(cases_dir):
    """The 'All 20 public cases' table of the README, as printed lines."""
    path = os.path.join(os.path.dirname(cases_dir.rstrip("/")), "README.md")
    try:
        text = open(path).read()
    except OSError:
        return []
    m = re.search(r"### All .*?\n\n(\|.*?)\n\n", text, re.S)
    if not m:
        return []
    out = []
    for line in m.group(1).splitlines()[2:]:
        cells = [x.strip() for x in line.strip("|").split("|")]
        out.append(cells)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cases_dir")
    ap.add_argument("methods", nargs="*")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5432)
    ap.add_argument("--user", default=os.environ.get("USER", "postgres"))
    ap.add_argument("--dbname", default="postgres")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    cases = load_cases(args.cases_dir)
    methods = args.methods or METHODS

    hdr = "| method | cases ok/run | mean MASE | median MASE | mean sMAPE % | 80% cov | 95% cov | median fit ms | total fit s |"
    print("dm_forecast via SQL on %d cases from %s\n" % (len(cases), args.cases_dir))
    print(hdr)
    print("|---|---|---|---|---|---|---|---|---|")
    failed = False
    for method in methods:
        line, ok = method_row(args, cases, method, "dm_forecast %s" % method)
        print(line)
        failed = failed or not ok
    base = baselines(args.cases_dir)
    if base:
        print("\nbaselines (README, all public cases; slow methods on the slow subset):\n")
        print("| method | cases ok/run | mean MASE | median MASE | geo-mean ratio | mean sMAPE % | 80% cov | 95% cov | median fit ms | total fit s |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for cells in base:
            print("| " + " | ".join(cells) + " |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
