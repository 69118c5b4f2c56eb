"""Delta Lake table I/O behind one small API, with two backends (see DESIGN.md)."""
