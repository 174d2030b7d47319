"""tools/explain.py and tools/demo.py never destroy files they did not write
(mmdet_odam.apis.output_files): user files in the output folder, someone
else's gallery / npz, input images inside the output folder, the previous run
on an option typo; a re-run removes only its own stale files; writes are
atomic. Uses the bundled tiny FCOS on 128 px synthetic images."""
import hashlib
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from mmdet_odam.apis.output_files import (MANIFEST_NAME, OutputConflictError,
                                          OutputGroup, atomic_open)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'tools'))
from cli_common import load_script as load_tool  # noqa: E402
CONFIG = REPO / 'configs' / 'fcos' / 'fcos_tiny_synthetic-crowd.py'
CHECKPOINT = REPO / 'checkpoints' / 'fcos_tiny_synthetic-crowd.pth'


@pytest.fixture(scope='module')
def explain_tool():
    return load_tool('tools/explain.py')


@pytest.fixture
def image(synthetic_crowd_root) -> Path:
    return synthetic_crowd_root / 'images' / 'val' / '000003.png'


def _explain(tool, capsys, images, out_dir, *options):
    images = images if isinstance(images, list) else [images]
    code = tool.main([str(CONFIG), str(CHECKPOINT), *map(str, images),
                      '--out-dir', str(out_dir), '--device', 'cpu',
                      '--targets', 'score', 'combined', *map(str, options)])
    captured = capsys.readouterr()
    return code, captured.err


def _digests(folder: Path) -> dict:
    """Relative path -> SHA-256 of every file under ``folder``."""
    return {str(p.relative_to(folder)):
            hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob('*')) if p.is_file()}


def _num_detections(npz: Path) -> int:
    with np.load(npz) as data:
        return len(data['scores'])


def test_rerun_removes_only_its_own_stale_files(explain_tool, capsys, image,
                                                tmp_path):
    out = tmp_path / 'out'
    stem = image.stem
    code, err = _explain(explain_tool, capsys, image, out, '--score-thr',
                         '0.2')
    assert code == 0, err
    many = _num_detections(out / f'{stem}.npz')
    first = set(p.name for p in (out / stem).glob('det*.png'))
    assert len(first) == 2 * many and many >= 2
    # the user's files, one named like the tool's outputs
    (out / stem / 'det999_mine.png').write_bytes(b'mine')
    (out / stem / 'notes.txt').write_bytes(b'notes')
    code, err = _explain(explain_tool, capsys, image, out, '--score-thr',
                         '0.6')
    assert code == 0, err
    few = _num_detections(out / f'{stem}.npz')
    assert few < many
    names = set(p.name for p in (out / stem).iterdir())
    expected = {f'det{i:03d}_{t}.png' for i in range(few)
                for t in ('score', 'combined')}
    assert names == expected | {'gallery.png', 'det999_mine.png',
                                'notes.txt', MANIFEST_NAME}
    assert (out / stem / 'det999_mine.png').read_bytes() == b'mine'
    assert (out / stem / 'notes.txt').read_bytes() == b'notes'


def test_someone_elses_gallery_and_npz_are_kept(explain_tool, capsys, image,
                                                tmp_path):
    out = tmp_path / 'out'
    stem = image.stem
    (out / stem).mkdir(parents=True)
    (out / stem / 'gallery.png').write_bytes(b'their gallery')
    (out / f'{stem}.npz').write_bytes(b'their arrays')
    before = _digests(out)
    code, err = _explain(explain_tool, capsys, image, out)
    assert code == 1
    line = err.strip().splitlines()[-1]
    assert line.startswith('error:') and 'gallery.png' in line
    assert 'not written by' in line and '--overwrite' in line
    assert _digests(out) == before  # nothing written, nothing removed
    # only the npz is someone else's: still refused
    (out / stem / 'gallery.png').unlink()
    code, err = _explain(explain_tool, capsys, image, out)
    assert code == 1 and f'{stem}.npz' in err
    assert (out / f'{stem}.npz').read_bytes() == b'their arrays'
    # --overwrite replaces them (and then they are the tool's own)
    code, err = _explain(explain_tool, capsys, image, out, '--overwrite')
    assert code == 0, err
    assert _num_detections(out / f'{stem}.npz') >= 0
    code, err = _explain(explain_tool, capsys, image, out)
    assert code == 0, err


def test_input_images_inside_the_output_folder_survive(explain_tool, capsys,
                                                       image, tmp_path):
    out = tmp_path / 'out'
    folder = out / image.stem
    folder.mkdir(parents=True)
    inside = folder / image.name  # DIR/<stem>/<stem>.png
    inside.write_bytes(image.read_bytes())
    code, err = _explain(explain_tool, capsys, inside, out)
    assert code == 0, err
    assert inside.read_bytes() == image.read_bytes()
    # an input named like an output of another input, inside DIR/<stem>/:
    # refused before anything is written, even with --overwrite
    named = folder / 'gallery.png'
    os.replace(inside, named)
    before = _digests(out)
    code, err = _explain(explain_tool, capsys, [image, named], out,
                         '--overwrite')
    assert code == 1 and 'is an input' in err
    assert _digests(out) == before
    # the npz path itself given as input
    npz = out / f'{image.stem}.npz'
    code, err = _explain(explain_tool, capsys, npz, out, '--overwrite')
    assert code == 1 and 'is an input' in err
    assert _digests(out) == before


def test_option_typo_fails_before_the_model_and_keeps_the_last_run(
        explain_tool, capsys, image, tmp_path, monkeypatch):
    out = tmp_path / 'out'
    code, err = _explain(explain_tool, capsys, image, out)
    assert code == 0, err
    before = _digests(out)
    assert len(before) > 3

    import mmdet_odam.apis as apis

    def no_model(*args, **kwargs):
        raise AssertionError('the model was built')

    monkeypatch.setattr(apis, 'init_explained_detector', no_model)
    for option, value, named in (('--cmap', 'jett', "'jett'"),
                                 ('--alpha', '1.5', '--alpha'),
                                 ('--smooth', 'adaptiv', '--smooth'),
                                 ('--method', 'fastest', 'method'),
                                 ('--grad-mode', 'rellu', 'grad_mode'),
                                 ('--cell-position', 'centre',
                                  'cell_position'),
                                 ('--score-thr', 'nan', '--score-thr'),
                                 ('--targets', 'scor', 'scor')):
        code, err = _explain(explain_tool, capsys, image, out, option, value)
        assert code == 1, option
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith('error:'), err
        assert named in lines[0]
    assert _digests(out) == before


def test_demo_keeps_someone_elses_summary(tmp_path, capsys):
    demo = load_tool('tools/demo.py')
    out = tmp_path / 'demo'
    out.mkdir()
    (out / 'summary.txt').write_text('my notes')
    code = demo.main(['--out-dir', str(out), '--device', 'cpu'])
    err = capsys.readouterr().err
    assert code == 1 and 'summary.txt' in err and '--overwrite' in err
    assert (out / 'summary.txt').read_text() == 'my notes'
    assert sorted(p.name for p in out.iterdir()) == ['summary.txt']


# -- output_files ----------------------------------------------------------
def test_atomic_open_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / 'a.npz'
    target.write_bytes(b'old')
    with pytest.raises(RuntimeError):
        with atomic_open(str(target)) as f:
            f.write(b'half of the new')
            raise RuntimeError('crash while writing')
    assert target.read_bytes() == b'old'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['a.npz']
    with atomic_open(str(target)) as f:
        f.write(b'new')
    assert target.read_bytes() == b'new'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['a.npz']


def test_output_group_owns_only_unchanged_recorded_files(tmp_path):
    def group(**kwargs):
        return OutputGroup(str(tmp_path), 's', lambda n: n.startswith('s/'),
                           **kwargs)

    first = group()
    for name in ('s/a.png', 's/b.png'):
        first.write(name, lambda f: f.write(b'tool'))
    assert first.finish() == []
    (tmp_path / 's' / 'b.png').write_bytes(b'edited by the user')
    second = group()
    with pytest.raises(OutputConflictError) as conflict:
        second.check(['s/b.png'])
    assert conflict.value.overridable
    second.write('s/c.png', lambda f: f.write(b'tool'))
    kept = second.finish()  # a.png: own, stale -> removed; b.png: edited
    assert kept == [str(tmp_path / 's' / 'b.png')]
    assert sorted(p.name for p in (tmp_path / 's').iterdir()) == [
        MANIFEST_NAME, 'b.png', 'c.png']
    # a manifest entry pointing outside the group is never followed
    (tmp_path / 'outside.txt').write_bytes(b'tool')
    manifest = (tmp_path / 's' / MANIFEST_NAME)
    manifest.write_text(manifest.read_text().replace('s/c.png',
                                                     'outside.txt'))
    group().finish()
    assert (tmp_path / 'outside.txt').read_bytes() == b'tool'
