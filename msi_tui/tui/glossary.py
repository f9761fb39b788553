"""Every word and figure the app shows, explained (the help screen's glossary).

Kept beside the code that shows them: a new state or counter belongs here too."""

from __future__ import annotations

from msi_tui.tui.throughput import HISTORY, WINDOW_S

_SPARK_S = HISTORY / 5  # samples at the default 5 Hz

GLOSSARY: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("Header (each service's connection; the worse one is shown, with its service)", (
        ("connected", "the service's Kafka client reaches the brokers"),
        ("connecting", "starting: no broker has answered yet"),
        ("unreachable", "no broker answers; the service retries by itself and says when Kafka is back"),
        ("not started", "a service could not start: its pane says why"),
    )),
    ("Upload pane", (
        ("queued", "found in the folder (or `upload PATH`), waiting for an upload thread"),
        ("sending", "being read and sent in chunks"),
        ("sent", "every chunk delivered to Kafka (acknowledged by the broker); not yet confirmed "
                 "at the destination"),
        ("failed", "could not be sent here: a read error, a name a reconstructor would refuse, a failed delivery"),
        ("stopped", "cut short by a quit: withdrawn; a watched folder's file is sent again at the next start"),
        ("changed", "the file changed while being sent: withdrawn and sent again"),
        ("held", "paused mid-file for over 2 minutes: withdrawn, sent again whole on resume"),
        ("pending", "chunks handed to the Kafka client, not yet acknowledged by the broker (quit waits for them)"),
        ("receipts", "what reconstructors said of the sent files (on the topic `<topic>.receipts`)"),
        ("verified", "a reconstructor rebuilt the file, its digest matched, and it was published "
                     "(where: host and path)"),
        ("awaiting", "awaiting a receipt: sent, no reconstructor has said anything yet"),
        ("failed there", "a reconstructor quarantined, refused or abandoned it (why: in the file's details)"),
    )),
    ("Reconstruct pane", (
        ("read", "records this reconstructor read from the topic"),
        ("receiving", "the file's chunks are arriving, staged on disk"),
        ("done, verified", "rebuilt, its digest matched, published under its name in the output folder"),
        ("quarantined", "the rebuilt file did not match its digest: kept in .msi-tui-quarantine/, never published"),
        ("rejected", "records that are not msi-tui's or are damaged: skipped, counted"),
        ("refused", "an upload the reconstructor cannot publish (it could not be saved under its name)"),
        ("abandoned", "its records stopped coming while its partition moved on (--abandon-after): dropped"),
        ("withdrawn", "its uploader withdrew it (the file changed, or its upload was cut short)"),
        ("handed over", "its partition moved to another member of the group, which finishes it"),
        ("blocked", "the output disk refuses writes (full, quota, permissions): waits, resumes by itself"),
        ("lag", "records on the topic this group has not read yet"),
        ("threads", "rebuilding threads"),
    )),
    ("Files tables (files in flight stay at the top, then the newest outcomes)", (
        ("size", "the file's size"),
        ("chunks", "chunks done / in all; k is a thousand, M a million (7.5k/19.2k)"),
        ("done", "percent of the chunks done (with a bar when the table is wide)"),
        ("rate", f"this file's speed over the last {WINDOW_S:g} s, once it has taken 3 s; dim: a finished "
                 "file's average"),
        ("left", "the time it still needs at that speed"),
        ("source", "the instrument PC that sent it (upload --source)"),
        ("where", "verified: the host and path it was published at; failed there: why"),
        ("digest sent", "in a file's details: the whole-file digest the uploader sent, which a verified copy "
         "has too (check by hand with `xxhsum -H2 FILE` or `sha256sum FILE`)"),
    )),
    ("Figures", (
        ("MB/s", f"bytes delivered (upload) or written (reconstruct) per second, averaged over the last "
                 f"{WINDOW_S:g} s; the sparkline beside it: the last {_SPARK_S:g} s"),
        ("units", "decimal: 1 kB = 1,000 bytes, 1 MB = 1,000,000 bytes, 1 GB = 10^9 bytes (the README's "
                  "chunk sizes are binary: 16 KiB = 16,384 bytes)"),
        ("counts", "since this app started: a restart counts from zero (the uploader's registry still "
                   "remembers what was sent, and does not send it again)"),
        ("Log title", "warnings and errors since the start or the last `clear`; F5 shows only them"),
    )),
)
