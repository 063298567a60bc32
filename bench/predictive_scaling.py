#!/usr/bin/env python3
"""bench/predictive_scaling.py: driftmirror's predictive scaling policy
(dm_backtest_scaling) beside a reactive scaler with Kubernetes HPA's rule,
on the same real demand series, in the same run.

Each series is rebuilt from the evaluation cases (train + test files of one
series, deduplicated by timestamp), shifted by whole days so that it ends
before now (the metric store keeps data within the group's retention),
ingested with dm_ingest into a group of its own, and replayed over its last
REPLAY steps with the history before as training data.

Both scalers:
  - see the demand of the buckets that ended before each decision;
  - order capacity up that arrives lead_time (one step of the series)
    later; a scale-down takes effect at once (instances are released at
    once, live ones and ones still being provisioned), as it does in
    production;
  - size with the same headroom: need(x) = ceil(x * (1 + headroom) / unit);
  - start with need(last demand before the replay), bounds 1 .. 1000.
The reactive scaler is HPA's algorithm: desired = ceil(current * ratio) with
ratio = utilisation / target utilisation, i.e. need(observed), no change
while |ratio - 1| <= 0.1 (HPA's default tolerance), and scale-down
stabilisation: the largest recommendation of the last 300 s (HPA default;
shorter than one step of these series, so it never holds a scale-down back).
An interval is under-provisioned when its demand exceeds live capacity x
unit; capacity-hours sum live capacity over the replay.  "oracle" is what a
scaler that knew each interval's demand would keep: need(demand) per
interval, no delay.

Prints one line per series and the total, and the time the replay took
per step; then the cost of the worker's forecast phase per group and step
(see phase_cost) beside the previous approach (parameters estimated at
every forecast), measured in the same run.
"""
import argparse
import csv
import datetime as dt
import math
import os
import subprocess
import sys
import time

HEADROOM = 0.2
TOLERANCE = 0.1
STABILISATION_S = 300

# name, series in the manifest, step, unit capacity, replay steps
SERIES = [
    ("taylor", "taylor", dt.timedelta(minutes=30), 1000.0, 1008),
    ("chicago_2005", "chicago_clark_lake_h14_o1695", dt.timedelta(days=1), 1.0, 364),
    ("chicago_2010", "chicago_clark_lake_h14_o3375", dt.timedelta(days=1), 1.0, 364),
    ("chicago_2014", "chicago_clark_lake_h14_o5055", dt.timedelta(days=1), 1.0, 364),
]


def psql(args, script):
    proc = subprocess.run(
        ["psql", "-X", "-q", "-A", "-t", "-F", ",", "-v", "ON_ERROR_STOP=1",
         "-h", args.host, "-p", str(args.port), "-U", args.user, "-d", args.dbname],
        input=script, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit("psql failed: " + proc.stderr.strip())
    return proc.stdout


def load_series(cases_dir, key):
    """Points of a series: all cases whose id starts with key (or whose
    series is key), train and test, by timestamp."""
    pts = {}
    with open(os.path.join(cases_dir, "manifest.csv")) as f:
        for r in csv.DictReader(f):
            if not (r["case_id"] == key or r["series"] == key):
                continue
            for fn in (r["train_file"], r["test_file"]):
                with open(os.path.join(cases_dir, fn)) as g:
                    for row in csv.DictReader(g):
                        ts = dt.datetime.fromisoformat(row["ts"])
                        pts[ts] = float(row["value"])
    return sorted(pts.items())


def need(x, unit, lo=1, hi=1000):
    return min(max(math.ceil(max(x, 0) * (1 + HEADROOM) / unit - 1e-9), lo), hi)


def hpa(demand, before, step, lead, unit):
    """Replay HPA's rule; demand[i] is the demand of step i, before the
    demand of the step before the replay.  Returns live capacity per step."""
    live = need(before, unit)
    spec = live
    recs = []                       # (time, recommendation)
    orders = []                     # (arrival, capacity)
    out = []
    step_s = step.total_seconds()
    lead_s = lead.total_seconds()
    for i in range(len(demand)):
        t = i * step_s
        observed = demand[i - 1] if i > 0 else before
        # utilisation of the live pods against the target 1 / (1 + headroom)
        ratio = observed * (1 + HEADROOM) / (live * unit) if live > 0 else math.inf
        rec = live if abs(ratio - 1) <= TOLERANCE else need(observed, unit)
        recs.append((t, rec))
        recs = [(u, r) for (u, r) in recs if u > t - STABILISATION_S]
        desired = rec if rec >= spec else min(spec, max(r for (_, r) in recs))
        if desired > spec:
            orders.append((t + lead_s, desired))
        elif desired < spec:
            # a scale-down takes effect at once, on live pods and on pods
            # still being provisioned
            live = min(live, desired)
            orders = [(u, min(c, desired)) for (u, c) in orders]
        spec = desired
        while orders and orders[0][0] <= t:
            live = orders.pop(0)[1]
        out.append(live)
    return out


def phase_cost(args, grp):
    """The worker's forecast phase for the group, as the worker runs it
    (driftmirror._forecast_step, mode forecast_only), in ms: its first call
    (trains the model), then, after five more calls (the worker's session
    keeps its plans: a cold session plans them), the median of five calls
    of each kind:
      - within a bucket: the bucket's forecast is stored, the step reads it;
      - new bucket: the step makes the bucket's forecast with the model's
        kept parameters (the stored forecast is deleted before each call);
      - previous approach, in the same run: the same with the parameters
        cleared (model.params NULL), so that the method estimates them
        again at each forecast, as every step of the phase did before.
    Also returns the model's method (auto keeps no parameters)."""
    gid = "(SELECT id FROM driftmirror.resource_group WHERE name = '%s')" % grp
    step = "SELECT count(*) FROM driftmirror._forecast_step(%s);" % gid
    drop = ("DELETE FROM driftmirror.forecast f USING driftmirror.model m"
            " WHERE m.id = f.model_id AND m.group_id = %s AND f.made_at ="
            " date_bin(m.step, now(), '2000-01-01 00:00+00');" % gid)
    clear = "UPDATE driftmirror.model SET params = NULL WHERE group_id = %s;" % gid
    # five warm-up steps first: the worker's session has its plans cached
    stmts = [("train", step)] + [("-", step)] * 5 + [("within", step)] * 5
    stmts += [("-", drop), ("new", step)] * 5
    stmts += [("-", clear)] + [("-", drop), ("refit", step)] * 5
    out = psql(args, "\\timing on\n" + "\n".join(q for _, q in stmts) + "\n\\timing off\n"
               "SELECT 'method=' || method FROM driftmirror.model WHERE group_id = %s"
               " ORDER BY version DESC LIMIT 1;" % gid)
    ms = [float(l.split()[1]) for l in out.splitlines() if l.startswith("Time: ")]
    method = ([l[7:] for l in out.splitlines() if l.startswith("method=")] or ["?"])[0]
    if len(ms) != len(stmts):
        return {"train": float("nan"), "within": float("nan"), "new": float("nan"),
                "refit": float("nan"), "method": method}
    res = {"method": method}
    for kind in ("train", "within", "new", "refit"):
        v = sorted(t for (k, _), t in zip(stmts, ms) if k == kind)
        res[kind] = v[len(v) // 2]
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cases_dir")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5432)
    ap.add_argument("--user", default=os.environ.get("USER", "postgres"))
    ap.add_argument("--dbname", default="postgres")
    ap.add_argument("--only", default=None, help="run one series")
    args = ap.parse_args()

    psql(args, "SELECT driftmirror.dm_set_metric_settings('{\"partition_interval\": \"31 days\"}');"
               "SELECT driftmirror.dm_register_metric('demand', '', 'bench demand')"
               " WHERE NOT EXISTS (SELECT FROM driftmirror.dm_metric_names WHERE name = 'demand');")
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    print("| series | step | steps | lead | predictive under | reactive under | ratio"
          " | predictive cap-h | reactive cap-h | cap-h ratio | oracle cap-h | replay ms/step |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    costs = []
    tot = {"pu": 0, "ru": 0, "pc": 0.0, "rc": 0.0, "oc": 0.0, "n": 0, "ms": 0.0}
    for name, key, step, unit, replay in SERIES:
        if args.only and args.only != name:
            continue
        pts = load_series(args.cases_dir, key)
        if len(pts) < replay + 100:
            sys.exit("series %s: only %d points" % (name, len(pts)))
        # whole days: the grid stays aligned and the series ends in the last
        # day, so the worker's phase below forecasts from fresh data
        shift = dt.timedelta(days=math.floor((now - pts[-1][0]).total_seconds() / 86400))
        lead = step
        grp = "bench_" + name
        lines = "\n".join("%s+00,%r" % ((ts + shift).isoformat(sep=" "), v) for ts, v in pts)
        psql(args, f"""
SELECT driftmirror.dm_drop_group(name, true) FROM driftmirror.dm_groups WHERE name = '{grp}';
SELECT driftmirror.dm_create_group('{grp}', jsonb_build_object(
    'retention', '3650 days', 'lead_time', '{int(lead.total_seconds())} seconds',
    'forecast_horizon', '{int(max(lead.total_seconds() * 4, 3600))} seconds',
    'headroom', {HEADROOM}, 'min_capacity', 1, 'max_capacity', 1000));
SELECT driftmirror.dm_add_resource('{grp}', 'svc', 'service', 'http://127.0.0.1:9/svc',
    options => jsonb_build_object('scale_metric', 'demand', 'unit_capacity', {unit}));
CREATE TEMP TABLE s (ts timestamptz, v float8);
COPY s FROM STDIN WITH (FORMAT csv);
{lines}
\\.
SELECT driftmirror.dm_ingest('{grp}', 'svc', 'demand', array_agg(ts ORDER BY ts), array_agg(v ORDER BY ts)) FROM s;
""")
        start = pts[-replay][0] + shift
        end = pts[-1][0] + shift + step
        before = pts[-replay - 1][1]
        t1 = time.monotonic()
        out = psql(args, f"""
SELECT ts, demand, capacity, decision FROM driftmirror.dm_backtest_scaling(
    '{grp}', 'svc', '{start.isoformat(sep=' ')}+00', '{end.isoformat(sep=' ')}+00') ORDER BY ts;
""")
        ms = (time.monotonic() - t1) * 1000
        rows = [line.split(",") for line in out.splitlines() if line]
        phase = phase_cost(args, grp)
        demand = [float(r[1]) for r in rows]
        pcap = [int(r[2]) for r in rows]
        rcap = hpa(demand, before, step, lead, unit)
        hours = step.total_seconds() / 3600
        pu = sum(d > c * unit for d, c in zip(demand, pcap))
        ru = sum(d > c * unit for d, c in zip(demand, rcap))
        pc = sum(pcap) * hours
        rc = sum(rcap) * hours
        # what a scaler that knew each interval's demand would keep
        oc = sum(need(d, unit) for d in demand) * hours
        print("| %s | %s | %d | %s | %d | %d | %s | %.0f | %.0f | %.3f | %.0f | %.1f |" % (
            name, step, len(rows), lead, pu, ru,
            ("%.1fx fewer" % (ru / pu)) if pu else ("%d vs 0" % ru),
            pc, rc, pc / rc, oc, ms / len(rows)), flush=True)
        costs.append((name, phase))
        for k, v in (("pu", pu), ("ru", ru), ("pc", pc), ("rc", rc), ("oc", oc), ("n", len(rows)), ("ms", ms)):
            tot[k] += v
    if tot["n"]:
        print("| total | | %d | | %d | %d | %s | %.0f | %.0f | %.3f | %.0f | %.1f |" % (
            tot["n"], tot["pu"], tot["ru"],
            ("%.1fx fewer" % (tot["ru"] / tot["pu"])) if tot["pu"] else ("%d vs 0" % tot["ru"]),
            tot["pc"], tot["rc"], tot["pc"] / tot["rc"], tot["oc"], tot["ms"] / tot["n"]))
        print("\ntarget: >= 5x fewer under-provisioned intervals at <= 1.1x the capacity-hours")
    print("\nforecast phase, ms per group and step (median of 5):\n")
    print("| series | model | training | step within a bucket | step at a new bucket, kept parameters"
          " | previous approach: parameters estimated again |")
    print("|---|---|---|---|---|---|")
    for name, p in costs:
        print("| %s | %s | %.0f | %.1f | %.1f | %.1f |" % (
            name, p["method"], p["train"], p["within"], p["new"], p["refit"]))


if __name__ == "__main__":
    main()
