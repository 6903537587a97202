"""How far apart two runs of the demo land: the same figures, or by how much
they differ.

Each run is ``make demo`` (``python tools/demo.py --work-dir
work_dirs/demo``) in its own clean clone, for instance one with
``OMP_NUM_THREADS=1`` and one with ``OMP_NUM_THREADS=2``::

    git clone . /tmp/cloneA && git clone . /tmp/cloneB
    (cd /tmp/cloneA && OMP_NUM_THREADS=2 python tools/demo.py \\
        --work-dir work_dirs/demo)
    (cd /tmp/cloneB && OMP_NUM_THREADS=1 python tools/demo.py \\
        --work-dir work_dirs/demo)
    python benchmarks/demo_reproducibility.py \\
        /tmp/cloneA:OMP_NUM_THREADS=2 /tmp/cloneB:OMP_NUM_THREADS=1

This reads each clone's commit and its ``work_dirs/demo/summary.json``,
compares every mIoU, the selected tensors and the checkpoints' sha256, and
writes ``benchmarks/results/demo_reproducibility.json``.
"""

import argparse
import hashlib
import json
import os.path as osp
import sys
from typing import Dict, List

from gearnn_bench.provenance import (
    RESULTS_DIR,
    add_allow_dirty,
    machine,
    record,
)
from mmseg_gearnn.utils import atomic_write

WORK_DIR = osp.join('work_dirs', 'demo')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        'runs',
        nargs='+',
        help='CLONE[:ENV] of each finished run (ENV: how it was run, '
        'e.g. OMP_NUM_THREADS=2)',
    )
    parser.add_argument(
        '--out', default=osp.join(RESULTS_DIR, 'demo_reproducibility.json')
    )
    add_allow_dirty(parser)
    return parser.parse_args(argv)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def _figures(report: dict) -> Dict[str, float]:
    """Every mIoU of one method's report, keyed ``type level``."""
    figures = {
        'clean': report['clean'],
        'mean_distorted': report['mean_distorted'],
    }
    for dtype, levels in report['levels'].items():
        for level, miou in levels.items():
            figures[f'{dtype} {level}'] = miou
    return figures


def read_run(spec: str) -> dict:
    clone, _, env = spec.partition(':')
    work_dir = osp.join(clone, WORK_DIR)
    with open(osp.join(work_dir, 'summary.json'), encoding='utf-8') as f:
        summary = json.load(f)
    # Paths in the summary are as the demo saw them, from its clone.
    with open(osp.join(clone, summary['selection']['file']), 'rb') as f:
        selected = json.load(f)['selected']
    # The clone's own commit, and whether it had changes of its own.
    source = record(osp.join(work_dir, 'summary.json'), repo_dir=clone)
    return dict(
        clone=clone,
        commit=source['commit'],
        clone_dirty=source['dirty'],
        environment=env or None,
        reproducibility=summary.get('reproducibility'),
        total_s=round(summary['timings_s']['total_s']),
        figures={
            name: _figures(report)
            for name, report in summary['reports'].items()
        },
        selected_sha256=hashlib.sha256(
            json.dumps(selected, sort_keys=True).encode()
        ).hexdigest(),
        checkpoints_sha256={
            name: _sha256(osp.join(clone, path))
            for name, path in summary['checkpoints'].items()
        },
    )


def spread(runs: List[dict]) -> dict:
    """Per method, the largest difference of any figure between runs."""
    first = runs[0]['figures']
    return {
        name: max(
            max(run['figures'][name][k] for run in runs)
            - min(run['figures'][name][k] for run in runs)
            for k in figures
        )
        for name, figures in first.items()
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    source = record(args.out, args.allow_dirty)  # before any work
    runs = [read_run(spec) for spec in args.runs]
    result = dict(
        command='python ' + ' '.join(sys.argv if argv is None else argv),
        **source,
        demo_command='python tools/demo.py --work-dir work_dirs/demo '
        '(make demo), each in its own clean clone',
        machine=machine(),
        runs=runs,
        max_abs_difference_miou=spread(runs),
        identical_checkpoints=all(
            run['checkpoints_sha256'] == runs[0]['checkpoints_sha256']
            for run in runs
        ),
        identical_selection=len({run['selected_sha256'] for run in runs}) == 1,
    )
    atomic_write(args.out, json.dumps(result, indent=2) + '\n')
    print(json.dumps(result['max_abs_difference_miou']))
    print(f'written: {args.out}')
    return result


if __name__ == '__main__':
    main()
