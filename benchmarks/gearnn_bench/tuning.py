"""The tuning split and the tuning grids: every knob is chosen on frames
carved from ``train``, never on ``val``.

The split is fixed, not drawn: within each CamVid sequence (the frame
name's prefix before its last ``_``, e.g. ``0016E5``), frames sorted by name
are in time order, and the last sixth of them (rounded) is for tuning, the
rest for fitting. Whole tail blocks keep the tuning frames away from the
fitting frames, except at one boundary per sequence: neighbouring frames of
a 30 Hz video are near copies, so a random split would tune on frames the
model has nearly seen. On CamVid this gives the 61 frames of
``configs/_base_/datasets/camvid_splits/train_tune.txt`` (0001TP: 10,
0006R0: 17, 0016E5: 34) and the 306 of ``train_fit.txt``.
"""

import hashlib
import itertools
import os
import os.path as osp
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from mmseg_gearnn.utils import atomic_write

from .provenance import REPO_ROOT

TUNE_FRACTION = 1 / 6
SPLIT_RULE = (
    'per sequence (frame name up to its last "_"), frames in name order: '
    'the last round(n/6) tune, the rest fit'
)
# The rule applied to CamVid's train split, committed.
COMMITTED_SPLITS = osp.join(REPO_ROOT, 'configs/_base_/datasets/camvid_splits')


def sequence_of(name: str) -> str:
    """The sequence a frame belongs to: its name up to the last ``_``."""
    return name.rsplit('_', 1)[0]


def tail_split(
    names: Sequence[str], fraction: float = TUNE_FRACTION
) -> Tuple[List[str], List[str]]:
    """``(fit, tune)`` frame names: the last ``round(n * fraction)`` frames
    of each sequence tune, the others fit, both in name order.

    Raises:
        ValueError: when no frame would be left to tune or to fit.
    """
    sequences: Dict[str, List[str]] = {}
    for name in sorted(names):
        sequences.setdefault(sequence_of(name), []).append(name)
    fit, tune = [], []
    for frames in sequences.values():
        n_tune = round(len(frames) * fraction)
        fit += frames[: len(frames) - n_tune]
        tune += frames[len(frames) - n_tune :]
    if not tune or not fit:
        raise ValueError(
            f'{len(names)} training frames in {len(sequences)} sequences '
            f'leave {len(fit)} to fit and {len(tune)} to tune; the tuning '
            'split takes the last sixth of each sequence (frames named '
            'SEQUENCE_FRAME), so it needs sequences of 3 frames or more'
        )
    return fit, tune


def split_files(data_root: str, out_dir: str) -> Dict[str, Any]:
    """The fit and tune lists (``ann_file`` format: frame names without
    suffix) of ``data_root/train``: the committed CamVid files when the
    rule gives exactly those, else written to ``out_dir``. Returns the
    paths, the counts per sequence and the lists' sha256."""
    names = sorted(
        osp.splitext(f)[0]
        for f in os.listdir(osp.join(data_root, 'train'))
        if not f.startswith('.')
    )
    lists = dict(zip(('fit', 'tune'), tail_split(names)))
    files = {}
    for part, frames in lists.items():
        text = '\n'.join(frames) + '\n'
        committed = osp.join(COMMITTED_SPLITS, f'train_{part}.txt')
        if osp.isfile(committed) and open(committed).read() == text:
            files[part] = committed
        else:
            files[part] = atomic_write(
                osp.join(out_dir, f'train_{part}.txt'), text
            )
    per_sequence = {}
    for frame in lists['tune']:
        seq = sequence_of(frame)
        per_sequence[seq] = per_sequence.get(seq, 0) + 1
    return dict(
        rule=SPLIT_RULE,
        fit_file=files['fit'],
        tune_file=files['tune'],
        fit_frames=len(lists['fit']),
        tune_frames=len(lists['tune']),
        tune_frames_per_sequence=per_sequence,
        sha256={
            part: hashlib.sha256('\n'.join(f).encode()).hexdigest()
            for part, f in lists.items()
        },
    )


def grid_points(
    grid: Mapping[str, Sequence], limit=None
) -> List[Dict[str, Any]]:
    """Every combination of a grid's values (at most ``limit`` values of
    each option, the first ones), as option dicts."""
    options = list(grid)
    values = [list(grid[o])[:limit] for o in options]
    return [dict(zip(options, combo)) for combo in itertools.product(*values)]


def point_label(point: Mapping[str, Any]) -> str:
    """A stage-name tag of a grid point: each option's last key and its
    value, e.g. ``_lr0.06``."""
    return ''.join(
        f'_{option.rsplit(".", 1)[-1]}{_value(value)}'
        for option, value in point.items()
    )


def _value(value) -> str:
    return f'{value:g}' if isinstance(value, float) else str(value)
