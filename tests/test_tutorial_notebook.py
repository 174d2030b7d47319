"""docs/tutorial.ipynb runs top to bottom (nbclient, a real IPython kernel)
on the bundled tiny FCOS and the synthetic data, and is committed without
outputs."""
import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / 'docs' / 'tutorial.ipynb'


def test_notebook_is_committed_without_outputs():
    nb = json.loads(NOTEBOOK.read_text(encoding='utf-8'))
    code = [c for c in nb['cells'] if c['cell_type'] == 'code']
    assert code, 'the tutorial has code'
    for cell in code:
        assert cell.get('outputs') == [] and \
            cell.get('execution_count') is None, ''.join(cell['source'])[:80]


def test_notebook_runs(synthetic_crowd_root, monkeypatch, tmp_path):
    nbformat = pytest.importorskip('nbformat')
    nbclient = pytest.importorskip('nbclient')
    monkeypatch.setenv('ODAM_TUTORIAL_DATA', str(synthetic_crowd_root))
    monkeypatch.setenv('PYTHONPATH', os.pathsep.join(
        [str(REPO)] + [p for p in [os.environ.get('PYTHONPATH')] if p]))
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name='python3',
        resources={'metadata': {'path': str(REPO / 'docs')}})
    client.execute()  # raises CellExecutionError on any failing cell
    text = []
    for cell in nb.cells:
        for out in cell.get('outputs', []):
            assert out.get('output_type') != 'error'
            text.append(out.get('text', ''))
    printed = ''.join(text)
    # the error table and counts the notebook computed
    line = next(l for l in printed.splitlines() if l.startswith('counts:'))
    counts = json.loads(line.split(':', 1)[1])
    assert set(counts) == {'correct', 'localization', 'classification',
                           'both', 'duplicate', 'background', 'missed'}
    assert counts['correct'] > 0
    assert '| correct |' in printed
    # pictures were drawn
    images = [o for c in nb.cells for o in c.get('outputs', [])
              if 'image/png' in o.get('data', {})]
    assert len(images) >= 2
