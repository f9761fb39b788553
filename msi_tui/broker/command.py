"""`msi-tui broker start|stop|status`: the local broker from the command line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from msi_tui.broker.local import LocalBroker
from msi_tui.errors import OperatorError

ACTIONS = ("start", "stop", "status")


def run_broker_command(
    action: str,
    port: int,
    home: Path | None = None,
    out: Callable[[str], object] = print,
) -> int:
    """Run one broker action, print one line with `out`, and return the exit code.

    Exit codes: 0 success (for `status`: running and answering); 1 `status` found the broker
    not running or not answering; `OperatorError.exit_code` (2) when the action failed, e.g.
    Java missing or the port taken.
    """
    try:
        broker = LocalBroker(home, port=port)
        if action == "start":
            bootstrap = broker.start()
            pid = broker.status().pid
            out(f"Kafka broker running at {bootstrap} (pid {pid}), data in {broker.data_dir}")
            return 0
        if action == "stop":
            out("Kafka broker stopped" if broker.stop() else "Kafka broker not running")
            return 0
        if action == "status":
            st = broker.status()
            if not st.running:
                out(f"Kafka broker not running (home {st.home})")
                return 1
            if not st.answering:
                out(
                    f"Kafka broker process {st.pid} is running but not answering at "
                    f"{st.bootstrap} (starting up? logs in {broker.logs_dir})"
                )
                return 1
            out(f"Kafka broker running at {st.bootstrap} (pid {st.pid}), data in {broker.data_dir}")
            return 0
        out(f"error: unknown broker action {action!r}: use one of {', '.join(ACTIONS)}")
        return OperatorError.exit_code
    except OperatorError as exc:
        out(f"error: {exc}")
        return exc.exit_code
