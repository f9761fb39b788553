"""One text in a framed, scrolling box in the middle of its screen: what the help screen and
a file's details share (the box's CSS and the box itself)."""

from __future__ import annotations

from rich.text import Text
from textual.containers import VerticalScroll
from textual.visual import VisualType
from textual.widgets import Static


def framed_css(screen: str, width: int) -> str:
    """CSS for the screen class `screen`: the box `width` cells wide (narrower on a smaller
    terminal), as tall as its text up to the screen's height."""
    return f"""
    {screen} {{ align: center middle; }}
    {screen} > VerticalScroll {{
        width: {width};
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: round $accent;
        border-title-style: bold;
        background: $surface;
        padding: 0 1;
    }}
    {screen} Static {{ width: 1fr; }}
    """


def framed(content: VisualType, title: str | Text, text_id: str) -> VerticalScroll:
    """The box: `content` in a Static of id `text_id`, `title` on the frame, how to close it below."""
    scroll = VerticalScroll(Static(content, id=text_id))
    scroll.border_title = title
    scroll.border_subtitle = "Esc to close"
    return scroll
