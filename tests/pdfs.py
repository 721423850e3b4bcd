"""PDFs built by hand, byte by byte, for the loader tests and the PDF ingest benchmark."""

from __future__ import annotations


def _escape(line: str) -> bytes:
    text = line.encode("latin-1", "replace")
    return text.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def make_pdf(pages: list[str], *, title: str | None = None, trailer_extra: bytes = b"",
             font_size: int = 12, leading: int = 14, top: int = 720) -> bytes:
    """A minimal valid PDF: one Helvetica text line per input line, xref offsets exact."""
    bodies: list[bytes] = [b"", b"", b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for text in pages:
        ops = (
            b"BT /F1 %d Tf 72 %d Td %d TL " % (font_size, top, leading)
            + b" ".join(b"(" + _escape(line) + b") Tj T*" for line in text.split("\n"))
            + b" ET"
        )
        bodies.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(ops), ops))
        bodies.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (len(bodies))
        )
        kids.append(len(bodies))
    bodies[0] = b"<< /Type /Catalog /Pages 2 0 R >>"
    bodies[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % k for k in kids),
        len(kids),
    )
    trailer = b"<< /Size %d /Root 1 0 R" % (len(bodies) + 2)
    if title is not None:
        bodies.append(b"<< /Title (" + title.encode("latin-1") + b") >>")
        trailer += b" /Info %d 0 R" % len(bodies)
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(bodies, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(bodies) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n" + trailer + trailer_extra + b" >>\nstartxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)
