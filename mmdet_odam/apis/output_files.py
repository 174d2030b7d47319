"""Write output files without destroying any file the tool did not write.

Used by :func:`mmdet_odam.apis.export.save_explanation` (``tools/explain.py``,
``tools/demo.py``). The rules:

* **Atomic files.** Each file is written to a temporary file in its own
  directory, flushed to disk and renamed over the target (``os.replace``): a
  crash leaves the old file or the new one, never part of one.
* **A manifest per output group** (one image stem):
  ``<out_dir>/<folder>/.mmdet-odam-manifest.json`` lists each file written for
  the group (path relative to ``out_dir``, SHA-256, size). It is rewritten
  (atomically) after every file, so it lists exactly the files written so far.
* **Own files only.** A file counts as the tool's own when the manifest lists
  it and it still has the recorded content. Writing over anything else (a
  file of the user's, one edited since, a symlink) raises
  :class:`OutputConflictError` before any file of the group is written, unless
  ``overwrite=True``. Protected paths (the input images) and directories are
  never replaced, not even with ``overwrite``.
* **Stale files.** :meth:`OutputGroup.finish` removes the files of the
  previous run that this run did not write again (e.g. ``det012_*.png`` after
  a run with fewer detections), only when they are still the tool's own and
  not protected; any other file is kept and reported.
"""
import hashlib
import json
import os
import os.path as osp
import secrets
from contextlib import contextmanager
from typing import BinaryIO, Callable, Dict, Iterable, Iterator, List

MANIFEST_NAME = '.mmdet-odam-manifest.json'
MANIFEST_FORMAT = 1


class OutputConflictError(FileExistsError):
    """Writing an output would replace a file the tool did not write.

    Attributes:
        paths (list[str]): The conflicting paths.
        overridable (bool): Whether ``overwrite=True`` would allow it (False
            when a path is protected, e.g. an input image, or a directory).
    """

    def __init__(self, message: str, paths: List[str],
                 overridable: bool) -> None:
        super().__init__(message)
        self.paths = paths
        self.overridable = overridable


def file_sha256(path: str) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def atomic_open(path: str) -> Iterator[BinaryIO]:
    """Open ``path`` for writing bytes; it appears complete or not at all.

    The bytes go to a hidden temporary file next to ``path`` (same file
    system, so the final rename is atomic), which is flushed, fsynced and
    renamed over ``path`` when the block ends without error, and removed
    otherwise. A symlink at ``path`` is replaced, not followed.
    """
    directory, name = osp.split(osp.abspath(path))
    temp = osp.join(directory, f'.{name}.{secrets.token_hex(4)}.tmp')
    # os.open with 0o666 keeps the umask's permissions (mkstemp gives 0o600)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, 'wb') as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        if osp.lexists(temp):
            os.remove(temp)
        raise


def _is_regular_file(path: str) -> bool:
    return osp.isfile(path) and not osp.islink(path)


class OutputGroup:
    """The files one run writes for one output group, with their manifest.

    Args:
        out_dir (str): Output root; file names are relative to it (``/``
            separated).
        folder (str): Folder under ``out_dir`` that holds the manifest (``''``
            for ``out_dir`` itself); it is created when the first file is
            written.
        owns_name (callable): Which relative names the group may write or
            remove; manifest entries naming anything else are ignored (never
            removed), so an edited manifest cannot point elsewhere.
        protected (Iterable[str]): Paths never written or removed (inputs).
        overwrite (bool): Replace existing files that are not the tool's own
            (never protected paths or directories).
    """

    def __init__(self, out_dir: str, folder: str,
                 owns_name: Callable[[str], bool],
                 protected: Iterable[str] = (),
                 overwrite: bool = False) -> None:
        self.out_dir = out_dir
        self.manifest_path = osp.join(out_dir, folder, MANIFEST_NAME)
        self.owns_name = owns_name
        self.protected = {osp.realpath(p) for p in protected}
        self.overwrite = overwrite
        self.manifest_problem = None
        self.previous = self._read_manifest()  # name -> entry, last run
        self.written: Dict[str, dict] = {}  # name -> entry, this run

    # -- manifest ------------------------------------------------------------
    def _read_manifest(self) -> Dict[str, dict]:
        if not osp.lexists(self.manifest_path):
            return {}
        try:
            with open(self.manifest_path, encoding='utf-8') as f:
                files = json.load(f)['files']
            return {name: entry for name, entry in files.items()
                    if isinstance(name, str) and self.owns_name(name) and
                    isinstance(entry, dict) and
                    isinstance(entry.get('sha256'), str)}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            # unreadable: none of the existing files counts as the tool's own
            self.manifest_problem = f'ignored unreadable manifest ' \
                f'{self.manifest_path} ({type(e).__name__})'
            return {}

    def _save_manifest(self, entries: Dict[str, dict]) -> None:
        os.makedirs(osp.dirname(self.manifest_path), exist_ok=True)
        text = json.dumps(
            dict(written_by='mmdet-odam', format=MANIFEST_FORMAT,
                 files=dict(sorted(entries.items()))), indent=1)
        with atomic_open(self.manifest_path) as f:
            f.write(text.encode('utf-8'))

    # -- ownership -----------------------------------------------------------
    def path(self, name: str) -> str:
        """Absolute-or-relative path (as ``out_dir``) of a relative name."""
        return osp.join(self.out_dir, *name.split('/'))

    def is_own(self, name: str) -> bool:
        """Whether the file now at ``name`` is one the tool wrote (listed in
        the manifest with the content it has now)."""
        entry = self.written.get(name) or self.previous.get(name)
        path = self.path(name)
        return entry is not None and _is_regular_file(path) and \
            os.path.getsize(path) == entry.get('size') and \
            file_sha256(path) == entry['sha256']

    def check(self, names: Iterable[str]) -> None:
        """Refuse to write ``names`` over inputs or other people's files.

        Raises:
            OutputConflictError: Naming the first conflicts.
        """
        fixed, overridable = [], []
        for name in names:
            if not self.owns_name(name):
                raise ValueError(f'{name!r} is not an output name of this '
                                 'group')
            path = self.path(name)
            parent = osp.dirname(path)
            if osp.realpath(path) in self.protected:
                fixed.append(f'{path} is an input')
            elif osp.lexists(parent) and not osp.isdir(parent):
                fixed.append(f'{parent} is not a directory')
            elif osp.isdir(path) and not osp.islink(path):
                fixed.append(f'{path} is a directory')
            elif osp.lexists(path) and not self.is_own(name):
                overridable.append(path)
        if not fixed and (not overridable or self.overwrite):
            return
        shown = fixed + [f'{p} exists and was not written by mmdet-odam'
                         for p in overridable]
        more = f' (+{len(shown) - 2} more)' if len(shown) > 2 else ''
        raise OutputConflictError(
            '; '.join(shown[:2]) + more + '; kept', fixed + overridable,
            overridable=not fixed)

    # -- writing -------------------------------------------------------------
    def write(self, name: str, write: Callable[[BinaryIO], None]) -> str:
        """Write one file atomically and record it; returns its path.

        Args:
            name (str): Relative name (see ``owns_name``).
            write (callable): Writes the content to the binary file it gets.

        Raises:
            OutputConflictError: See :meth:`check`.
        """
        self.check([name])
        path = self.path(name)
        os.makedirs(osp.dirname(path) or '.', exist_ok=True)
        with atomic_open(path) as f:
            write(f)
        self.written[name] = dict(sha256=file_sha256(path),
                                  size=os.path.getsize(path))
        # the manifest always lists every file written so far
        self._save_manifest({**self.previous, **self.written})
        return path

    def finish(self) -> List[str]:
        """Remove the previous run's files not written again by this one.

        Only files that are still the tool's own and not protected are
        removed; the manifest then lists this run's files alone.

        Returns:
            list[str]: Paths of earlier files that were kept (changed since
            the tool wrote them, or protected).
        """
        kept = []
        for name in sorted(set(self.previous) - set(self.written)):
            path = self.path(name)
            if not osp.lexists(path):
                continue
            if osp.realpath(path) in self.protected or not self.is_own(name):
                kept.append(path)
            else:
                os.remove(path)
        self._save_manifest(self.written)
        self.previous = dict(self.written)
        return kept


__all__ = ['MANIFEST_NAME', 'OutputConflictError', 'OutputGroup',
           'atomic_open', 'file_sha256']
