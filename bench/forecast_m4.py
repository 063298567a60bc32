#!/usr/bin/env python3
"""Accuracy and speed of driftmirror.dm_forecast on the M4 Hourly set.

Called by bench/forecast_m4 with a running server.  DATA_DIR holds
Hourly-train.csv and Hourly-test.csv of the M4 competition (the public
repository Mcompetitions/M4-methods, folder Dataset/; not in this tree, and
nothing is downloaded).  Every series goes through SQL,
dm_forecast(vals, '{24,168}', 48, method), in one psql session per method;
it is scored as in the M4 paper: MASE scaled by the in-sample seasonal naive
error at lag 24, sMAPE, and (ours) the share of test values inside the 80
and 95 percent intervals.  "median ms" is the statement time psql reports
(parse of the literal, fit, forecast, transfer), per series; "CPU ms" the
server process's CPU time (user + system, from /proc) over the session
divided by the number of series: unlike the wall time, the other processes
of a busy machine leave it alone.

The first line is seasonal naive at lag 24 through the same function
(dm_forecast(vals, '{24}', 48, 'snaive')), the M4 paper's benchmark, measured
in the same run; its mean MASE must be 1.193.

Only the standard library; psql must be on PATH.
"""
import argparse
import csv
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from forecast_accuracy import method_row  # noqa: E402

METHODS = ["snaive", "hw", "mstl", "arima", "prophet", "theta", "auto"]


def read_m4(path, first):
    out = {}
    with open(path, newline="") as f:
        rows = csv.reader(f)
        next(rows)
        for r in rows:
            out[r[0]] = [float(x) for x in r[1:] if x != ""]
            if first and len(out) >= first:
                break
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data_dir")
    ap.add_argument("methods", nargs="*")
    ap.add_argument("--first", type=int, default=0, help="only the first N series")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5432)
    ap.add_argument("--user", default=os.environ.get("USER", "postgres"))
    ap.add_argument("--dbname", default="postgres")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_intermixed_args()
    train = read_m4(os.path.join(args.data_dir, "Hourly-train.csv"), args.first)
    test = read_m4(os.path.join(args.data_dir, "Hourly-test.csv"), args.first)
    series = [{"id": k, "m": 24, "h": 48, "train": v, "test": test[k][:48],
               "seasons": [24, 168]} for k, v in train.items()]
    runs = [("seasonal naive, lag 24 (M4 benchmark)", "snaive",
             [dict(s, seasons=[24]) for s in series])]
    runs += [("dm_forecast %s" % m, m, series) for m in (args.methods or METHODS)]

    print("dm_forecast via SQL on %d M4 Hourly series, seasons {24,168}, horizon 48\n"
          % len(series))
    print("| method | series ok/run | mean MASE | median MASE | mean sMAPE % | 80% cov | 95% cov | median ms | CPU ms | total s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    failed = False
    for label, method, cases in runs:
        line, ok = method_row(args, cases, method, label, cpu=True, ms_fmt="%.1f")
        print(line)
        sys.stdout.flush()
        failed = failed or not ok
    print("\nM4 paper (Makridakis et al., IJF 2020), hourly, mean MASE / sMAPE %: "
          "seasonal naive 1.193 / 13.91, winner (Smyl) 0.893 / 9.33, best hourly entry 0.801 / 8.91")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
