"""The gate's measuring process: opens bundles and times them on request, nothing else.

The gate runs two of these, one for the base and one for the candidate, and takes turns
between them, so each side's runs happen with the other side idle. The base's worker may
run the *base's* sr-edge code (its checkout first on ``sys.path``): this file is therefore
started by path (``runpy``), not imported from the package, and uses only what every
sr-edge version has had: ``sr_edge.backends.load_bundle`` and ``Session.run``.

Protocol: one JSON object per line on stdin, one reply per line on stdout.

``{"cmd": "hello"}``
    -> ``{"ok": true, "sr_edge": "<folder of the sr_edge package in use>"}``
``{"cmd": "open", "id": ROW, "bundle": DIR, "backend": B, "precision": P|null,
"device": D|null, "options": {...}, "shape": [N, C, H, W]}``
    -> ``{"ok": true, "build_s": s, "precision": p, "fallback": null|text}`` after one untimed run
``{"cmd": "time", "id": ROW, "runs": k}`` -> ``{"ok": true, "ms": [k floats]}``
``{"cmd": "close", "id": ROW}``, ``{"cmd": "quit"}``

Any failure is ``{"ok": false, "error": "one line"}``; the worker keeps serving.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def _serve() -> None:
    from pathlib import Path

    import numpy as np

    import sr_edge.backends as backends
    from sr_edge.backends import load_bundle

    sessions: dict[str, Any] = {}
    inputs: dict[str, Any] = {}
    out = sys.stdout
    sys.stdout = sys.stderr  # a runtime's chatter must not corrupt the protocol
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            cmd = req.get("cmd")
            if cmd == "hello":
                reply: dict[str, Any] = {"ok": True, "sr_edge": str(Path(backends.__file__).resolve().parents[1])}
            elif cmd == "open":
                rid = str(req["id"])
                options = req.get("options") or {}
                session = load_bundle(req["bundle"], req["backend"], req.get("precision"), req.get("device"), **options)
                n, c, h, w = (int(v) for v in req["shape"])
                x = np.random.default_rng(0).random((n, c, h, w), dtype=np.float32)
                session.run(x)  # first-run set-up at this size happens here, not in a timed turn
                sessions[rid], inputs[rid] = session, x
                reply = {
                    "ok": True,
                    "build_s": float(getattr(session, "build_seconds", 0.0)),
                    "precision": str(getattr(session, "precision", req.get("precision"))),
                    "fallback": getattr(session, "fallback", None),
                }
            elif cmd == "time":
                rid = str(req["id"])
                session, x = sessions[rid], inputs[rid]
                ms = []
                for _ in range(int(req.get("runs", 1))):
                    t0 = time.perf_counter_ns()
                    session.run(x)
                    ms.append((time.perf_counter_ns() - t0) / 1e6)
                reply = {"ok": True, "ms": ms}
            elif cmd == "close":
                session = sessions.pop(str(req["id"]), None)
                inputs.pop(str(req["id"]), None)
                if session is not None:
                    session.close()
                reply = {"ok": True}
            elif cmd == "quit":
                out.write(json.dumps({"ok": True}) + "\n")
                out.flush()
                return
            else:
                reply = {"ok": False, "error": f"unknown command {cmd!r}"}
        except KeyboardInterrupt:
            raise
        except Exception as e:  # reported to the gate, which names the row
            reply = {"ok": False, "error": " ".join(f"{type(e).__name__}: {e}".split())[:500]}
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    _serve()
