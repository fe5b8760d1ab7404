"""Bursts of alerts against the service as deployed, with OKX's real 20-per-2-seconds pacing.

    python -m bench.burst [--sizes 50,200,1000] [--rounds 3]

Starts the stand-in OKX (answers at once, enforces the limit) and the Procfile's gunicorn
on 127.0.0.1, posts N different alerts at once, and reports per burst: the slowest reply
(TradingView gives up at 3 s), when the last alert reached OKX, the least time the limit
allows for N, and their ratio. Every alert is checked to have been executed exactly once.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import threading
import time

import requests

from tests.conftest import WEBHOOK_SECRET, make_alert
from tests.okx_stand_in import OkxStandIn
from tests.service_process import ServiceProcess


def burst_once(size: int) -> dict:
    okx = OkxStandIn().start()
    folder = tempfile.mkdtemp(prefix="burst-")
    service = ServiceProcess({
        "WEBHOOK_SECRET": WEBHOOK_SECRET, "OKX_API_KEY": okx.api_key, "OKX_API_SECRET": okx.secret_key,
        "OKX_API_PASSPHRASE": okx.passphrase, "OKX_BASE_URL": okx.base_url,
        "DATABASE_URL": f"sqlite:///{folder}/alerts.db", "MAX_LAG": "3600"}).start()
    try:
        latencies = [0.0] * size
        statuses = [0] * size
        barrier = threading.Barrier(size + 1)

        def post(i: int) -> None:
            session = requests.Session()
            body = make_alert(amount=f"{i + 1}")
            barrier.wait()
            started = time.monotonic()
            response = session.post(service.url + "/webhook", json=body, timeout=30)
            latencies[i] = time.monotonic() - started
            statuses[i] = response.status_code

        threads = [threading.Thread(target=post, args=(i,)) for i in range(size)]
        for t in threads:
            t.start()
        barrier.wait()
        t0 = time.monotonic()
        for t in threads:
            t.join()
        deadline = time.monotonic() + 2.2 * size / 20 + 30
        while len(okx.executed) < size and time.monotonic() < deadline:
            time.sleep(0.05)
        last_sent = max(okx.counted_times) - t0 if okx.counted_times else float("nan")
        amounts = sorted(int(b["amt"]) for b in okx.executed)
        least = (math.ceil(size / 20) - 1) * 2.0
        return {
            "size": size, "slowest_reply_s": max(latencies), "p50_reply_s": statistics.median(latencies),
            "statuses": {s: statuses.count(s) for s in sorted(set(statuses))},
            "last_sent_s": last_sent, "least_s": least, "ratio": last_sent / least if least else float("nan"),
            "executed_once_each": amounts == list(range(1, size + 1)), "okx_rate_limited": okx.rate_limited,
            "max_in_2s": okx.max_in_any_window(),
        }
    finally:
        service.terminate()
        okx.stop()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="50,200,1000")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"{'burst':>6} {'round':>5} {'slowest reply':>14} {'p50 reply':>10} {'last sent':>10} "
          f"{'least':>6} {'ratio':>6} {'max/2s':>6} {'429s':>5} {'once each':>9}  replies")
    ok = True
    for size in [int(s) for s in args.sizes.split(",")]:
        for round_ in range(1, args.rounds + 1):
            r = burst_once(size)
            ok &= r["executed_once_each"] and r["okx_rate_limited"] == 0 and r["slowest_reply_s"] < 3
            print(f"{size:>6} {round_:>5} {r['slowest_reply_s']:>13.3f}s {r['p50_reply_s']:>9.3f}s "
                  f"{r['last_sent_s']:>9.3f}s {r['least_s']:>5.1f}s {r['ratio']:>6.3f} {r['max_in_2s']:>6} "
                  f"{r['okx_rate_limited']:>5} {str(r['executed_once_each']):>9}  {r['statuses']}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
