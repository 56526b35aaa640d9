"""What MQTT costs the door: the time a decision spends in ``MqttDoor.decision`` and the delivery latency.

    python benchmarks/mqtt_latency.py [--events 2000]

Starts Debian's mosquitto on a loopback port (as the tests do) and prints one
JSON row per case: the door's per-decision call time (median, p99, max, in
microseconds) with the broker up, with nothing listening, and with a socket
that accepts and never answers; and, with the broker up, the time from the
call to a subscriber's receipt (median, p99, in milliseconds).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facegate.edge.mqtt.config import MqttConfig  # noqa: E402
from facegate.edge.mqtt.door import MqttDoor  # noqa: E402
from facegate.edge.types import Decision, Outcome  # noqa: E402
from tests.integration.mqtt_broker import Broker, free_port  # noqa: E402


def decision(i: int) -> Decision:
    # one millisecond apart, mid-millisecond: the published timestamp names the event exactly
    grant = bool(i % 2)
    return Decision(timestamp=1.8e9 + i / 1000 + 0.0005, outcome=Outcome.GRANT if grant else Outcome.DENY,
                    name=f"p{i}" if grant else None, distance=0.4, threshold=0.9, model_id="bench", reason="bench",
                    frames_used=3)


def call_times(door: MqttDoor, n: int) -> np.ndarray:
    out = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter()
        door.decision(decision(i))
        out[i] = time.perf_counter() - t0
    return out * 1e6


def row(case: str, us: np.ndarray, **more) -> dict:
    return {"case": case, "events": len(us), "call_us_median": round(float(np.median(us)), 1),
            "call_us_p99": round(float(np.percentile(us, 99)), 1), "call_us_max": round(float(us.max()), 1), **more}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=2000)
    args = ap.parse_args()
    n = args.events
    cfg = dict(enabled=True, host="127.0.0.1", keepalive_seconds=5, frigate_events=True, queue_size=2 * n)

    with tempfile.TemporaryDirectory() as tmp:
        broker = Broker(Path(tmp)).start()
        try:
            import paho.mqtt.client as paho

            got: dict[str, float] = {}
            done = threading.Event()
            sub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-sub")

            def on_message(c, u, msg):
                got[json.loads(msg.payload)["timestamp"]] = time.perf_counter()
                if len(got) >= n:
                    done.set()

            sub.on_message = on_message
            sub.on_connect = lambda c, *a: c.subscribe("facegate/bench/decision", qos=1)
            sub.connect("127.0.0.1", broker.port)
            sub.loop_start()
            time.sleep(0.5)
            door = MqttDoor(MqttConfig(port=broker.port, base_topic="facegate/bench", client_id="bench", **cfg),
                            model_id="bench", unlock=lambda: None, lock=lambda: None).start()
            door.link.wait_connected(5)
            sent: dict[str, float] = {}
            us = np.empty(n)
            for i in range(n):
                d = decision(i)
                t0 = time.perf_counter()
                door.decision(d)
                us[i] = (time.perf_counter() - t0) * 1e6
                sent[datetime_iso(d.timestamp)] = t0
                time.sleep(0.001)
            done.wait(30)
            lat = np.array([got[k] - t for k, t in sent.items() if k in got]) * 1000
            print(json.dumps(row("broker up", us, delivered=len(lat),
                                 delivery_ms_median=round(float(np.median(lat)), 2),
                                 delivery_ms_p99=round(float(np.percentile(lat, 99)), 2))), flush=True)
            door.close()
            sub.disconnect()
            sub.loop_stop()
        finally:
            broker.stop()

    door = MqttDoor(MqttConfig(port=free_port(), base_topic="facegate/bench", client_id="bench-down", **cfg),
                    model_id="bench", unlock=lambda: None, lock=lambda: None).start()
    print(json.dumps(row("nothing listening", call_times(door, n), queued=door.link.stats.queued)), flush=True)
    door.close()

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(5)
    door = MqttDoor(MqttConfig(port=silent.getsockname()[1], base_topic="facegate/bench", client_id="bench-silent",
                               **cfg), model_id="bench", unlock=lambda: None, lock=lambda: None).start()
    print(json.dumps(row("broker never answers", call_times(door, n), queued=door.link.stats.queued)), flush=True)
    t0 = time.perf_counter()
    door.close()
    print(json.dumps({"case": "close with the broker silent", "seconds": round(time.perf_counter() - t0, 2)}))
    silent.close()


def datetime_iso(ts: float) -> str:
    from facegate.edge.mqtt.events import _iso

    return _iso(ts)


if __name__ == "__main__":
    main()
