"""Log lines the operator reads."""

from msi_tui.engine.events import FileUploadStarted
from msi_tui.formatting import describe_event


def test_a_one_chunk_upload_says_chunk_not_chunks() -> None:
    def line(chunks: int) -> str:
        return describe_event(FileUploadStarted(path="welcome.txt", size=68, chunks=chunks, upload_id="u", at=0.0))[1]

    assert line(1) == "sending welcome.txt (68 B, 1 chunk)"
    assert line(10) == "sending welcome.txt (68 B, 10 chunks)"
    assert line(0) == "sending welcome.txt (68 B, 0 chunks)"
