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
  - order capacity up that arrives lead_time later (the provisioning
    delay, the same for both: RUNS); a scale-down takes effect at once
    (instances are released at once, live ones and ones still being
    provisioned), as it does in production;
  - size with the same headroom: need(x) = ceil(x * (1 + headroom) / unit);
  - start with need(last demand before the replay), bounds 1 .. 1000.
The reactive scaler is HPA's algorithm: desired = ceil(current * ratio) with
ratio = utilisation / target utilisation, i.e. need(observed), no change
while |ratio - 1| <= 0.1 (HPA's default tolerance), and scale-down
stabilisation: the largest recommendation of the last 300 s (HPA default;
shorter than one step of these series, so it never holds a scale-down back).
It acts when a step's demand becomes known, at the step's start.  The
predictive scaler is the worker's policy as dm_backtest_scaling replays it
(decisions at each step's start and, when lead_time is not a whole number
of steps, lead_time before a step starts).  Capacity can change inside an
interval (a scale-up ordered at a step's start with a lead_time shorter
than the step arrives inside it): an interval is under-provisioned when
its demand exceeds its time-weighted live capacity x unit ("strict": the
smallest capacity live in it); capacity-hours sum live capacity over
time.  "oracle" is what a scaler that knew each interval's demand would
keep: need(demand) per interval, no delay.

The daily series (downtown Chicago boardings) fall on public holidays: in
the runs with events their groups carry the US federal holidays of their
years (holidays(): rules of the calendar, no data) as events named
'holiday', as a DBA registers known calendar events with dm_add_event; the
forecasting models use them as regressors.  The reactive scaler has no use
for them.  A run without events shows what they bring.

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

# the runs: provisioning delays (lead_time) and whether the daily series'
# groups carry the US federal holidays as events.  Realistic delays first
# (an instance is live within the hour; taylor's step is 30 minutes, so
# one step), with and without the holidays; then the stress case of a
# whole day for the daily series
WITHIN_THE_HOUR = {"taylor": dt.timedelta(minutes=30),
                   "chicago_2005": dt.timedelta(hours=1),
                   "chicago_2010": dt.timedelta(hours=1),
                   "chicago_2014": dt.timedelta(hours=1)}
RUNS = [
    ("provisioning within the hour; the daily series' groups carry the US federal holidays as events",
     WITHIN_THE_HOUR, True),
    ("provisioning within the hour; no events", 
     {k: v for k, v in WITHIN_THE_HOUR.items() if k != "taylor"}, False),
    ("stress: provisioning takes a whole step of the daily series (1 day); holidays as events",
     {"chicago_2005": dt.timedelta(days=1),
      "chicago_2010": dt.timedelta(days=1),
      "chicago_2014": dt.timedelta(days=1)}, True),
]


def nth_weekday(year, month, weekday, n):
    d = dt.date(year, month, 1)
    return d + dt.timedelta(days=(weekday - d.weekday()) % 7, weeks=n - 1)


def last_weekday(year, month, weekday):
    d = dt.date(year, month + 1, 1) - dt.timedelta(days=1)
    return d - dt.timedelta(days=(d.weekday() - weekday) % 7)


def observed(d):
    """A fixed-date holiday on a weekend is observed on the nearest weekday."""
    if d.weekday() == 5:
        return d - dt.timedelta(days=1)
    if d.weekday() == 6:
        return d + dt.timedelta(days=1)
    return d


def holidays(year):
    """US federal holidays that empty downtown Chicago (the Clark/Lake
    station's boardings fall on them), with Thanksgiving's Friday and
    Christmas and New Year's eves."""
    thanksgiving = nth_weekday(year, 11, 3, 4)
    return {observed(dt.date(year, 1, 1)), nth_weekday(year, 1, 0, 3),
            nth_weekday(year, 2, 0, 3), last_weekday(year, 5, 0),
            observed(dt.date(year, 7, 4)), nth_weekday(year, 9, 0, 1),
            thanksgiving, thanksgiving + dt.timedelta(days=1),
            dt.date(year, 12, 24), observed(dt.date(year, 12, 25)), dt.date(year, 12, 31)}


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


def account(live, orders, t, step_s):
    """Apply the orders arriving in [t, t + step_s) (those at t first);
    return (live at the end, orders left, the smallest capacity live in
    the interval, its capacity-seconds)."""
    while orders and orders[0][0] <= t:
        live = orders.pop(0)[1]
    low, cap_s, at = live, 0.0, t
    while orders and orders[0][0] < t + step_s:
        arrival, cap = orders.pop(0)
        cap_s += live * (arrival - at)
        at, live = arrival, cap
        low = min(low, live)
    cap_s += live * (t + step_s - at)
    return live, orders, low, cap_s


def hpa(demand, before, step, lead, unit):
    """Replay HPA's rule; demand[i] is the demand of step i, before the
    demand of the step before the replay.  HPA acts when a step's demand
    is known, at the step's start.  Returns (smallest live capacity,
    capacity-hours) per step."""
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
        live, orders, low, cap_s = account(live, orders, t, step_s)
        out.append((low, cap_s / 3600))
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


def load_group(args, grp, pts, shift, step, lead, unit, events):
    """(Re)create the group of a series with lead_time lead and ingest it;
    with events, the holidays of its years as events named 'holiday'."""
    lines = "\n".join("%s+00,%r" % ((ts + shift).isoformat(sep=" "), v) for ts, v in pts)
    psql(args, f"""
SELECT driftmirror.dm_drop_group(name, true) FROM driftmirror.dm_groups WHERE name = '{grp}';
SELECT driftmirror.dm_create_group('{grp}', jsonb_build_object(
    'retention', '3650 days', 'lead_time', '{int(lead.total_seconds())} seconds',
    'forecast_horizon', '{int(max(step.total_seconds() * 4, lead.total_seconds() * 4, 3600))} seconds',
    'headroom', {HEADROOM}, 'min_capacity', 1, 'max_capacity', 1000));
SELECT driftmirror.dm_add_resource('{grp}', 'svc', 'service', 'http://127.0.0.1:9/svc',
    options => jsonb_build_object('scale_metric', 'demand', 'unit_capacity', {unit}));
CREATE TEMP TABLE s (ts timestamptz, v float8);
COPY s FROM STDIN WITH (FORMAT csv);
{lines}
\\.
SELECT driftmirror.dm_ingest('{grp}', 'svc', 'demand', array_agg(ts ORDER BY ts), array_agg(v ORDER BY ts)) FROM s;
""")
    if events:
        days = sorted(set().union(*(holidays(y) for y in range(pts[0][0].year, pts[-1][0].year + 1))))
        psql(args, "\n".join(
            "SELECT driftmirror.dm_add_event('%s', 'holiday', '%s+00', '%s+00');" % (
                grp, start.isoformat(sep=" "), (start + dt.timedelta(days=1, seconds=-1)).isoformat(sep=" "))
            for start in (dt.datetime(d.year, d.month, d.day) + shift for d in days)))


def dur(td):
    """A step or delay as people write it: 30 min, 1 h, 1 day."""
    sec = int(td.total_seconds())
    for unit, n in (("day", 86400), ("h", 3600), ("min", 60)):
        if sec % n == 0:
            return "%d %s" % (sec // n, unit)
    return "%d s" % sec


def fewer(r, p):
    return ("%.1fx fewer" % (r / p)) if p else ("%d vs 0" % r)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cases_dir")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5432)
    ap.add_argument("--user", default=os.environ.get("USER", "postgres"))
    ap.add_argument("--dbname", default="postgres")
    ap.add_argument("--only", default=None, help="run one series")
    ap.add_argument("--no-stress", action="store_true", help="skip the whole-day provisioning run")
    ap.add_argument("--no-baselines", action="store_true", help="skip the run without events")
    args = ap.parse_args()

    psql(args, "SELECT driftmirror.dm_set_metric_settings('{\"partition_interval\": \"31 days\"}');"
               "SELECT driftmirror.dm_register_metric('demand', '', 'bench demand')"
               " WHERE NOT EXISTS (SELECT FROM driftmirror.dm_metric_names WHERE name = 'demand');")
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    costs = []
    for run, leads, events in RUNS:
        if (args.no_stress and run.startswith("stress")) or (args.no_baselines and not events):
            continue
        print("\n%s\n" % run)
        print("| series | step | steps | lead | predictive under | reactive under | ratio"
              " | predictive cap-h | reactive cap-h | cap-h ratio | oracle cap-h"
              " | strict: predictive / reactive under | replay ms/step |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        tot = {"pu": 0, "ru": 0, "pc": 0.0, "rc": 0.0, "oc": 0.0, "n": 0, "ms": 0.0,
               "spu": 0, "sru": 0}
        for name, key, step, unit, replay in SERIES:
            if (args.only and args.only != name) or name not in leads:
                continue
            lead = leads[name]
            pts = load_series(args.cases_dir, key)
            if len(pts) < replay + 100:
                sys.exit("series %s: only %d points" % (name, len(pts)))
            # whole days: the grid stays aligned and the series ends in the
            # last day, so the worker's phase below forecasts from fresh data
            shift = dt.timedelta(days=math.floor((now - pts[-1][0]).total_seconds() / 86400))
            grp = "bench_" + name
            load_group(args, grp, pts, shift, step, lead, unit, events and step >= dt.timedelta(days=1))
            start = pts[-replay][0] + shift
            end = pts[-1][0] + shift + step
            before = pts[-replay - 1][1]
            t1 = time.monotonic()
            out = psql(args, f"""
SELECT ts, demand, capacity, decision, capacity_hours FROM driftmirror.dm_backtest_scaling(
    '{grp}', 'svc', '{start.isoformat(sep=' ')}+00', '{end.isoformat(sep=' ')}+00') ORDER BY ts;
""")
            ms = (time.monotonic() - t1) * 1000
            rows = [line.split(",") for line in out.splitlines() if line]
            if name not in [c[0] for c in costs]:
                costs.append((name, phase_cost(args, grp)))
            demand = [float(r[1]) for r in rows]
            hours = step.total_seconds() / 3600
            pmin = [int(r[2]) for r in rows]
            pch = [float(r[4]) for r in rows]
            reactive = hpa(demand, before, step, lead, unit)
            rmin = [x[0] for x in reactive]
            rch = [x[1] for x in reactive]
            # under-provisioned: demand above the time-weighted capacity of
            # the interval; strict: above the smallest capacity live in it
            pu = sum(d > c / hours * unit for d, c in zip(demand, pch))
            ru = sum(d > c / hours * unit for d, c in zip(demand, rch))
            spu = sum(d > c * unit for d, c in zip(demand, pmin))
            sru = sum(d > c * unit for d, c in zip(demand, rmin))
            pc, rc = sum(pch), sum(rch)
            # what a scaler that knew each interval's demand would keep
            oc = sum(need(d, unit) for d in demand) * hours
            print("| %s | %s | %d | %s | %d | %d | %s | %.0f | %.0f | %.3f | %.0f | %d / %d | %.1f |" % (
                name, dur(step), len(rows), dur(lead), pu, ru, fewer(ru, pu),
                pc, rc, pc / rc, oc, spu, sru, ms / len(rows)), flush=True)
            for k, v in (("pu", pu), ("ru", ru), ("pc", pc), ("rc", rc), ("oc", oc),
                         ("n", len(rows)), ("ms", ms), ("spu", spu), ("sru", sru)):
                tot[k] += v
        if tot["n"]:
            print("| total | | %d | | %d | %d | %s | %.0f | %.0f | %.3f | %.0f | %d / %d | %.1f |" % (
                tot["n"], tot["pu"], tot["ru"], fewer(tot["ru"], tot["pu"]),
                tot["pc"], tot["rc"], tot["pc"] / tot["rc"], tot["oc"], tot["spu"], tot["sru"],
                tot["ms"] / tot["n"]))
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
