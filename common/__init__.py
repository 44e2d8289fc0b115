"""The bottom layer every package may import: prompt types, file I/O that never leaves half-written files, and
content digests. It imports nothing from the project."""
