"""The per-frame records of inference and the report written from them:
``frames.json`` (summary and records) and ``frames.csv``."""

import csv
import io
import json
import os.path as osp
from collections import Counter
from typing import List

import cv2
import numpy as np

from ..utils.io import atomic_write

# The report's columns, in order (``frames.csv``).
RECORD_FIELDS = (
    'frame',
    'status',
    'gear',
    'type',
    'level',
    'source',
    'ms',
    'reason',
)


def format_record(record: dict) -> str:
    """One line per frame: ``name gear=<g> (<type> <level>) source=<s> <ms>
    ms``, or ``name skipped (<reason>)``."""
    if record['status'] != 'ok':
        return f'{record["frame"]} skipped ({record["reason"]})'
    level = '' if record['level'] is None else f' {record["level"]}'
    return (
        f'{record["frame"]} gear={record["gear"]} ({record["type"]}{level}) '
        f'source={record["source"]} {record["ms"]:.1f} ms'
    )


def summarize(records: List[dict]) -> dict:
    """Frames done and skipped, mean time per frame, gear histogram."""
    done = [r for r in records if r['status'] == 'ok']
    skipped = [r['frame'] for r in records if r['status'] != 'ok']
    histogram = Counter(r['gear'] for r in done)
    return dict(
        frames_done=len(done),
        frames_skipped=len(skipped),
        skipped=skipped,
        mean_ms=round(sum(r['ms'] for r in done) / len(done), 3)
        if done
        else None,
        gear_histogram={str(g): histogram[g] for g in sorted(histogram)},
    )


def write_report(out_dir: str, summary: dict, records: List[dict]) -> None:
    """Writes ``frames.json`` and ``frames.csv`` atomically."""
    atomic_write(
        osp.join(out_dir, 'frames.json'),
        json.dumps(dict(summary=summary, frames=records), indent=2),
    )
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=RECORD_FIELDS, lineterminator='\n'
    )
    writer.writeheader()
    for record in records:
        writer.writerow({k: record.get(k, '') for k in RECORD_FIELDS})
    atomic_write(osp.join(out_dir, 'frames.csv'), buffer.getvalue())


def png_bytes(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode('.png', image)
    if not ok:
        raise RuntimeError('PNG encoding failed')
    return encoded.tobytes()
