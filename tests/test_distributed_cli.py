"""``--launcher pytorch`` on CPU (tools/cli_common.setup_distributed): the
2-process explanation evaluation under torchrun gives the 1-process table."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed

from mmengine.config import Config

REPO = Path(__file__).resolve().parents[1]
CONFIG = 'configs/fcos/fcos_tiny_synthetic-crowd.py'
CHECKPOINT = 'checkpoints/fcos_tiny_synthetic-crowd.pth'
sys.path.insert(0, str(REPO / 'tools'))
import cli_common  # noqa: E402


def _eval_args(work_dir: Path, root: Path) -> list:
    """The cheapest evaluation: one method, 4 images, 1 deletion step."""
    return [CONFIG, CHECKPOINT, '--methods', 'odam', '--num-images', '4',
            '--deletion-steps', '1', '--score-thr', '0.3', '--num-threads',
            '1', '--work-dir', str(work_dir), '--cfg-options',
            f'test_dataloader.dataset.data_root={root}/']


@pytest.mark.skipif(not torch.distributed.is_available() or
                    not torch.distributed.is_gloo_available(),
                    reason='torch without gloo')
def test_two_process_evaluation_on_cpu_equals_one_process(
        synthetic_crowd_root, tmp_path):
    # no GPU: the CPU (gloo) path even on a machine that has one
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='', OMP_NUM_THREADS='1',
               PYTHONWARNINGS='ignore')
    res = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--standalone',
         '--nproc_per_node', '2', 'tools/eval_explanations.py',
         *_eval_args(tmp_path / 'two', synthetic_crowd_root), '--launcher',
         'pytorch'],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    with open(tmp_path / 'two' / 'explanation_table.json') as f:
        two = json.load(f)['methods']['odam']['metrics']
    # the same evaluation in this one process
    tool = cli_common.load_script('tools/eval_explanations.py')
    one = tool.main(_eval_args(tmp_path / 'one',
                               synthetic_crowd_root))['odam']['metrics']
    assert one['num_images'] == two['num_images'] == 4
    assert one['num_objects'] > 0
    timing = {'sec_per_explanation'}
    assert set(one) == set(two)
    for key in sorted(set(one) - timing):
        a, b = one[key], two[key]
        assert a == b or (math.isnan(a) and math.isnan(b)), (key, a, b)


def test_pytorch_launcher_without_torchrun_is_one_line(monkeypatch, capsys):
    if torch.cuda.is_available():
        pytest.skip('with CUDA, MMEngine launches (its own messages)')
    for key in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(SystemExit) as exit_info:
        cli_common.setup_distributed(Config(dict(model=dict())), 'pytorch')
    message = str(exit_info.value.code)
    assert message.startswith('error:') and '\n' not in message
    assert 'torchrun' in message and 'RANK' in message
    assert not torch.distributed.is_initialized()


def test_setup_distributed_leaves_other_launchers_alone():
    cfg = Config(dict(model=dict()))
    cli_common.setup_distributed(cfg, 'none')
    assert cfg.launcher == 'none' and 'model_wrapper_cfg' not in cfg


@pytest.mark.parametrize('tool', ['tools/train.py', 'tools/test.py',
                                  'tools/eval_explanations.py'])
def test_runner_tools_refuse_cfg_options_without_equals(tool):
    extra = [] if tool == 'tools/train.py' else [CHECKPOINT]
    res = subprocess.run([sys.executable, tool, CONFIG, *extra,
                          '--cfg-options', 'foo'], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert lines[0].startswith('error:') and "'foo'" in lines[0]
