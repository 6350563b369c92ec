"""Atomic file output, and readers that name a damaged file and say how to rebuild it.

Every output is written to a temporary file in the same directory and moved into place with
``os.replace`` (atomic on POSIX). An interrupted job therefore leaves either nothing or a stray
``.tmp`` file, never a truncated output under the final name, and Snakemake reruns it.

A file damaged afterwards (a disk error, a copy cut short, an edit by hand) still looks complete to
Snakemake, which only compares modification times. The readers here therefore raise
:class:`CorruptFileError` naming the file and the command that rebuilds it and everything made from
it, rather than a bare ``BadZipFile`` or ``JSONDecodeError`` from deep inside a figure job.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd


class CorruptFileError(ValueError):
    """A pipeline file that exists but cannot be read; the message names it and how to rebuild it."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        super().__init__(f"{path} is corrupt or truncated ({reason}). It is a pipeline output: rebuild it, and "
                         f"everything made from it, with `snakemake --cores all --forcerun {path}` (plus the "
                         f"--configfile/--profile of your build)")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it to ``path``, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; outputs should be as readable as any other file
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except OSError as err:
        tmp_path.unlink(missing_ok=True)
        if err.filename in (None, str(tmp_path)):  # name the file being written, not its temporary
            raise OSError(err.errno, err.strerror or str(err), str(path)) from err
        raise
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_default) + "\n")


def read_json(path: str | Path) -> Any:
    """Parse a JSON file the pipeline wrote; :class:`CorruptFileError` if it does not parse."""
    try:
        return json.loads(Path(path).read_bytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
        raise CorruptFileError(path, f"not valid JSON: {err}") from err


def read_csv(path: str | Path, columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read a CSV file the pipeline wrote, checking it ends with a complete line and has ``columns``.

    A CSV cut short mid-line still parses (the last row padded with NaN), so the final newline that
    every writer here emits is what tells a complete file from a truncated one.
    """
    path = Path(path)
    raw = path.read_bytes()
    if not raw.endswith(b"\n"):
        raise CorruptFileError(path, "it does not end with a complete line" if raw else "it is empty")
    try:
        df = pd.read_csv(io.BytesIO(raw))
    except (ValueError, UnicodeDecodeError) as err:  # pandas' ParserError and EmptyDataError are ValueErrors
        raise CorruptFileError(path, f"not a valid CSV table: {err}") from err
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise CorruptFileError(path, f"column{'s' if len(missing) > 1 else ''} {', '.join(missing)} missing")
    return df


def save_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Compressed npz, written atomically."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of an npz file (read eagerly, so damage shows here, as :class:`CorruptFileError`)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, KeyError) as err:
        # a truncated zip is BadZipFile or EOFError, a damaged member zlib.error or a CRC error
        # (BadZipFile), a file that is not a zip at all a ValueError from np.load
        raise CorruptFileError(path, f"{type(err).__name__}: {err}") from err


def _default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")
