"""Print pip constraints that forbid downgrading any installed distribution.

One ``name>=version`` line per distribution installed in this Python (the one
found first on ``sys.path``, as imports see it), for ``pip install -c FILE``:
with it pip may upgrade a package or leave it alone, never downgrade it.
``tools/setup_env.sh`` runs it before installing anything.

Not constrained: this project itself (reinstalled from the checkout) and
``setuptools`` >= 82, which lacks the ``pkg_resources`` that mmengine 0.10.7
needs (the installer replaces it by the newest ``setuptools<82``; a note on
stderr says so). Local version labels are dropped (``torch>=2.13.0`` for
``2.13.0+cpu``, which pip does not accept after ``>=``; the installed build
still satisfies it).

Usage::

    python tools/pip_constraints.py [NAME==VERSION ...] >> constraints.txt

The optional pins are versions the caller is about to install: if one is
installed at a higher version (pip could only downgrade it), nothing is
printed and it exits 1 with a one-line message.
"""
import importlib.metadata as metadata
import re
import sys
from typing import Iterable, List, Optional, Tuple

try:
    from packaging.version import InvalidVersion, Version
except ImportError:  # a bare Python: pip's own copy
    from pip._vendor.packaging.version import InvalidVersion, Version

PROJECT = 'mmdet-odam'
# the newest setuptools that still ships pkg_resources is < this
SETUPTOOLS_WITHOUT_PKG_RESOURCES = (82, )


def canonical_name(name: str) -> str:
    """PEP 503 normalised project name (``Foo_Bar`` -> ``foo-bar``)."""
    return re.sub(r'[-_.]+', '-', name).lower()


def installed_constraints(
        distributions: Optional[Iterable] = None
) -> Tuple[List[str], List[str]]:
    """Constraint lines for installed distributions, and notes.

    Args:
        distributions (Iterable, optional): ``importlib.metadata``
            distributions (default: those of this Python, in ``sys.path``
            order).

    Returns:
        tuple[list[str], list[str]]: Sorted ``name>=version`` lines, and
        human-readable notes on what was left unconstrained.
    """
    if distributions is None:
        distributions = metadata.distributions()
    found = {}
    notes = []
    for dist in distributions:
        name = dist.metadata['Name'] if dist.metadata else None
        version = dist.version
        if not name or not version:
            continue
        key = canonical_name(name)
        if key in found:  # shadowed by the one earlier on sys.path
            continue
        try:
            parsed = Version(version)
        except InvalidVersion:  # pip cannot compare it
            notes.append(f'{name} {version}: not a PEP 440 version, '
                         'unconstrained')
            found[key] = None
            continue
        public, release = parsed.public, parsed.release
        if key == PROJECT:
            found[key] = None
            continue
        if key == 'setuptools' and release >= SETUPTOOLS_WITHOUT_PKG_RESOURCES:
            notes.append(f'setuptools {version} has no pkg_resources '
                         '(mmengine 0.10.7 needs it): replaced by the newest '
                         'setuptools<82')
            found[key] = None
            continue
        found[key] = f'{key}>={public}'
    return sorted(line for line in found.values() if line), notes


def pins_below_installed(pins: Iterable[str],
                         distributions: Optional[Iterable] = None
                         ) -> List[str]:
    """Pins ``name==version`` that are older than the installed version.

    Raises:
        ValueError: For a pin that is not ``name==version``.
    """
    if distributions is None:
        distributions = metadata.distributions()
    installed = {}
    for dist in distributions:
        name = dist.metadata['Name'] if dist.metadata else None
        if name:
            installed.setdefault(canonical_name(name), dist.version)
    lower = []
    for pin in pins:
        name, sep, version = pin.partition('==')
        if not sep or not name or not version:
            raise ValueError(f'pin must be name==version, got {pin!r}')
        current = installed.get(canonical_name(name))
        try:
            if current is not None and Version(current) > Version(version):
                lower.append(f'{name} {current} is installed, {pin} needed')
        except InvalidVersion:
            continue
    return lower


def main(argv: Optional[List[str]] = None) -> int:
    pins = sys.argv[1:] if argv is None else argv
    lower = pins_below_installed(pins)
    if lower:
        print(f'[setup] error: {"; ".join(lower)}, and nothing installed is '
              'downgraded: use a fresh virtual environment '
              '(PYTHON=/path/to/venv/bin/python make ...)', file=sys.stderr)
        return 1
    lines, notes = installed_constraints()
    for note in notes:
        print(f'[setup] note: {note}', file=sys.stderr)
    print('\n'.join(lines))
    return 0


if __name__ == '__main__':
    sys.exit(main())
