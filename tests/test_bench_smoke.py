"""`bench/run --quick`: each of the five benchmarks still runs end to end against the real servers.

Tiny sizes, so the numbers mean nothing and no timing is asserted; what is asserted is what every run
must show whatever the machine: every request answered, nothing lost or duplicated, one storm message.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_bench_runs_all_five_figures(tmp_path):
    out = tmp_path / "rows.json"
    results = ROOT / "bench" / "RESULTS.md"
    results_before = results.read_bytes() if results.exists() else None
    proc = subprocess.run([str(ROOT / "bench" / "run"), "--quick", "--json", str(out)], cwd=ROOT,
                          env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = {r["figure"]: r for r in json.loads(out.read_text())}
    assert not [f for f, r in rows.items() if r["verdict"] == "ERROR"]
    assert (results.read_bytes() if results.exists() else None) == results_before   # a smoke run records nothing

    for figure in ("1a. Ack: /fortnox diagnose", "1b. Ack: button diagnose.rerun"):
        assert rows[figure]["data"]["ok"] == rows[figure]["data"]["requests"] == 20

    ingested = [r for f, r in rows.items() if f.startswith("2. Webhook ingest")]
    # SQLite in one process; PostgreSQL in one process and as server + worker (measured, or skipped with the reason)
    assert len(ingested) == 3
    for r in ingested:
        if r["verdict"] == "skip":
            assert "PostgreSQL" in r["measured"]
            continue
        d = r["data"]
        assert d["accepted"] == d["stored"] == d["events"] == 100
        assert (d["incidents"], d["max_incidents_per_tenant"]) == (20, 1)
        assert d["max_live_per_tenant"] <= 1
        assert 0 < d["rss_mb"]
        assert (d["worker_rss_mb"] or 0) > 0 if d["jobs_apart"] else d["worker_rss_mb"] is None
        assert d["drain"] is not None      # the diagnoses ran, in the worker process where there is one

    storm = rows["3. Storm: messages posted"]["data"]
    assert (storm["accepted"], storm["messages"]) == (20, 1)
    assert storm["posts"] >= 1
    assert storm["platform_causes"] == ["client_credentials_invalid"]
    assert (storm["lost"], storm["undelivered"]) == (0, 0)

    for figure, concurrency in (("4. Bulk diagnose --all, 20 tenants", 5),
                                ("4. Bulk diagnose --all, 20 tenants, default --concurrency 10", 10)):
        bulk = rows[figure]["data"]
        assert (bulk["exit"], bulk["diagnosed"], bulk["causes"]) == (0, 20, {"healthy": 20})
        assert (bulk["concurrency"], bulk["api_calls"]) == (concurrency, 80)   # 4 Fortnox calls per diagnosis

    assert rows["5. Single diagnosis, valid token"]["data"]["causes"] == ["healthy"] * 3
    assert rows["5. Single diagnosis, expired token (+ refresh)"]["data"]["causes"] == ["token_refreshed"] * 3
    assert "figure" in proc.stdout and "verdict" in proc.stdout    # the table was printed
