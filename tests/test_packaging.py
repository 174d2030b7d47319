"""Repository packaging: the licence, and tools/setup_env.sh never letting
pip downgrade what is installed (openmim without its openxlab chain)."""
import ast
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'tools'))
from cli_common import load_script  # noqa: E402


def test_apache_license_file_and_setup_metadata():
    text = (REPO / 'LICENSE').read_text()
    assert text.startswith('Copyright 2026 mmdet-odam contributors\n')
    assert 'Apache License\n' in text and 'Version 2.0, January 2004' in text
    # the full text: all nine sections and the appendix, no placeholder left
    for section in range(1, 10):
        assert re.search(rf'^   {section}\. [A-Z]', text, re.M), section
    assert 'END OF TERMS AND CONDITIONS' in text
    assert 'APPENDIX: How to apply the Apache License' in text
    assert '[yyyy]' not in text
    tree = ast.parse((REPO / 'setup.py').read_text())
    setup_call = next(node for node in ast.walk(tree)
                      if isinstance(node, ast.Call) and
                      getattr(node.func, 'id', '') == 'setup')
    license_kw = {k.arg: k.value for k in setup_call.keywords}['license']
    assert ast.literal_eval(license_kw) == 'Apache-2.0'


# -- tools/setup_env.sh: nothing installed is downgraded ---------------------
SETUP_ENV = REPO / 'tools' / 'setup_env.sh'
CONSTRAINT_LINE = re.compile(r'^[a-z0-9]([a-z0-9-]*[a-z0-9])?>=[0-9]\S*$')


def _commands(script: str) -> list:
    """The script's commands, backslash-continued lines joined, comments
    dropped."""
    text = re.sub(r'\\\n\s*', ' ', script)
    return [line.split(' #')[0].strip() for line in text.splitlines()
            if line.strip() and not line.strip().startswith('#')]


def test_setup_env_installs_only_under_no_downgrade_constraints():
    commands = _commands(SETUP_ENV.read_text())
    installs = [c for c in commands if re.match(r'(\w+=\S+ )*pip_install ', c)]
    assert len(installs) >= 6
    # pip itself is only called through the constrained PIP array
    raw = [c for c in commands if re.search(r'pip"? install|-m pip install',
                                            c)]
    assert raw == ['PIP=("$PY" -m pip install --disable-pip-version-check '
                   '-c "$CONSTRAINTS")'], raw
    body = next(i for i, c in enumerate(commands)
                if c.startswith('pip_install() {'))
    assert commands[body + 1].startswith('"${PIP[@]}" "$@"')
    # the installed versions become constraints before the first install
    generate = next(i for i, c in enumerate(commands)
                    if 'tools/pip_constraints.py' in c)
    assert '>> "$CONSTRAINTS"' in commands[generate]
    assert generate < commands.index(installs[0])
    # openmim without its dependency chain (opendatalab -> openxlab pins
    # setuptools 60.2, requests 2.28, ...); its commands' imports by name
    mim = [c for c in installs if 'openmim' in c.split()]
    assert mim == ['pip_install --no-deps openmim']
    assert not [c for c in installs
                if re.search(r'opendatalab|openxlab', c)]
    assert any(set(c.split()) >= {'click', 'model-index', 'pandas',
                                  'requests', 'rich', 'tabulate'}
               for c in installs)


class _Dist:
    def __init__(self, name, version):
        self.metadata = {'Name': name}
        self.version = version


def test_pip_constraints_lines_are_name_ge_installed_version():
    tool = load_script('tools/pip_constraints.py')
    lines, notes = tool.installed_constraints([
        _Dist('Foo_Bar', '1.2.3'), _Dist('torch', '2.13.0+cpu'),
        _Dist('foo-bar', '0.1'),  # shadowed by the first on sys.path
        _Dist('mmdet-odam', '0.1.0'), _Dist('setuptools', '82.0.1'),
        _Dist('weird', 'not a version'), _Dist('numpy', '2.4.6')])
    assert lines == ['foo-bar>=1.2.3', 'numpy>=2.4.6', 'torch>=2.13.0']
    assert len(notes) == 2 and any('setuptools 82.0.1' in n for n in notes)
    lines, _ = tool.installed_constraints([_Dist('setuptools', '81.0.0')])
    assert lines == ['setuptools>=81.0.0']
    assert tool.pins_below_installed(
        ['mmengine==0.10.7', 'mmdet==3.3.0', 'absent==1.0'],
        [_Dist('mmengine', '0.10.8'), _Dist('mmdet', '3.3.0')]) == [
            'mmengine 0.10.8 is installed, mmengine==0.10.7 needed']


def test_pip_constraints_of_this_environment():
    """Every line parses as a requirement that the installed version meets."""
    from importlib import metadata

    from packaging.requirements import Requirement
    res = subprocess.run([sys.executable, 'tools/pip_constraints.py',
                          'mmdet==3.3.0'], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.split()
    assert lines and all(CONSTRAINT_LINE.match(line) for line in lines)
    for line in lines:
        requirement = Requirement(line)
        installed = metadata.version(requirement.name)
        assert requirement.specifier.contains(installed.split('+')[0],
                                              prereleases=True), line
    assert not [line for line in lines if line.startswith('mmdet-odam')]
    assert any(line.startswith('mmdet>=') for line in lines)
    res = subprocess.run([sys.executable, 'tools/pip_constraints.py',
                          'mmdet==3.2.0'], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 1 and not res.stdout
    assert 'mmdet 3.3.0 is installed' in res.stderr
