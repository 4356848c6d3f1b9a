"""Just enough of PDF to check a rendering: the header and trailer, and the text drawn
on the pages (fpdf2 writes it as `(...) Tj` in Flate-compressed content streams)."""

from __future__ import annotations

import re
import zlib

_STREAM = re.compile(rb"stream\r?\n(.*?)\r?\nendstream", re.S)
_SHOWN = re.compile(rb"\(((?:[^()\\]|\\.)*)\)\s*Tj")


def pdf_text(pdf: bytes) -> str:
    """The text shown on the pages, one string per `Tj`, joined by newlines; raises if
    `pdf` is not a PDF document."""
    assert pdf.startswith(b"%PDF-1."), pdf[:16]
    assert pdf.rstrip().endswith(b"%%EOF")
    shown: list[str] = []
    for stream in _STREAM.findall(pdf):
        try:
            content = zlib.decompress(stream)
        except zlib.error:
            continue  # a font or an image, not a page
        shown += [
            s.decode("latin-1").replace("\\(", "(").replace("\\)", ")")
            for s in _SHOWN.findall(content)
        ]
    return "\n".join(shown)
