import csv
import json

import cv2
import numpy as np
import pytest

from mmseg_gearnn.evaluation import (
    load_reports,
    markdown_table,
    plot_miou_vs_level,
    write_csv,
    write_markdown_table,
)
from mmseg_gearnn.utils.io import atomic_write

RESULTS = {
    'GearNN': {
        'jpeg': {40: 70.0, 10: 55.5},
        'brightness': {0.5: 68.0, 0.2: 40.25},
    },
    # Read from JSON: string levels, a missing level and a null value.
    'base': {'jpeg': {'40': 65.0, '10': None}, 'brightness': {'0.5': 60.0}},
}
CLEAN = {'GearNN': 72.0, 'base': 73.5}


def test_plot_size_and_content(tmp_path):
    out = tmp_path / 'plots' / 'miou.png'
    assert plot_miou_vs_level(RESULTS, out, CLEAN, dpi=50) == str(out)
    img = cv2.imread(str(out))
    # Two types side by side, 4 x 3 inches each at 50 dpi.
    assert img.shape == (150, 400, 3)
    # Something is drawn: not a blank canvas.
    assert (img < 128).any() and len(np.unique(img.reshape(-1, 3), 0)) > 10
    assert [p.name for p in out.parent.iterdir()] == ['miou.png']


def test_plot_legend_takes_a_spare_cell(tmp_path):
    types = ('a', 'b', 'c', 'd')
    results = {
        f'method_{j}': {t: {1: 50.0 - j, 2: 40.0 - j} for t in types}
        for j in range(2)
    }
    clean = {m: 60.0 for m in results}
    plot_miou_vs_level(results, tmp_path / 'p.png', clean, dpi=50)
    img = cv2.imread(str(tmp_path / 'p.png'))
    assert img.shape == (300, 600, 3)  # 2 x 3 cells of 200 x 150
    # Row 2 holds type 'd', then the legend, then nothing (margins left
    # to the neighbours' tick labels).
    legend, empty = img[160:290, 220:380], img[150:, 420:]
    assert (legend < 128).any()
    assert (empty == 255).all()


def test_plot_wraps_rows_and_draws_clean(tmp_path):
    results = {'m': {t: {1: 50.0, 2: 40.0} for t in ('a', 'b', 'c', 'd')}}
    plot_miou_vs_level(results, tmp_path / 'p.png', max_cols=3, dpi=20)
    assert cv2.imread(str(tmp_path / 'p.png')).shape == (120, 240, 3)
    # The dashed clean line changes the picture.
    plot_miou_vs_level(
        results, tmp_path / 'c.png', {'m': 45.0}, max_cols=3, dpi=20
    )
    assert not np.array_equal(
        cv2.imread(str(tmp_path / 'p.png')),
        cv2.imread(str(tmp_path / 'c.png')),
    )


@pytest.mark.faults
def test_plot_rejects_empty_results(tmp_path):
    with pytest.raises(ValueError, match='empty'):
        plot_miou_vs_level({}, tmp_path / 'x.png')
    with pytest.raises(TypeError, match='base'):
        plot_miou_vs_level({'base': [1, 2]}, tmp_path / 'x.png')
    assert not list(tmp_path.iterdir())


def test_markdown_one_row_per_method(tmp_path):
    path = tmp_path / 'table.md'
    write_markdown_table(RESULTS, path, CLEAN)
    assert path.read_text() == markdown_table(RESULTS, CLEAN)
    lines = path.read_text().splitlines()
    assert lines == [
        '| Method | clean | jpeg 40 | jpeg 10 | brightness 0.5 '
        '| brightness 0.2 | mean distorted |',
        '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
        # (70 + 55.5 + 68 + 40.25) / 4 = 58.44
        '| GearNN | 72.00 | 70.00 | 55.50 | 68.00 | 40.25 | 58.44 |',
        '| base | 73.50 | 65.00 | - | 60.00 | - | - |',
    ]


def test_markdown_without_clean():
    header = markdown_table(RESULTS).splitlines()[0]
    assert header.startswith('| Method | jpeg 40 |')


def test_csv_long_format(tmp_path):
    path = tmp_path / 'miou.csv'
    write_csv(RESULTS, path, CLEAN)
    with open(path, newline='') as f:
        rows = list(csv.reader(f))
    assert rows == [
        ['method', 'type', 'level', 'mIoU'],
        ['GearNN', 'clean', '', '72.00'],
        ['GearNN', 'jpeg', '40', '70.00'],
        ['GearNN', 'jpeg', '10', '55.50'],
        ['GearNN', 'brightness', '0.5', '68.00'],
        ['GearNN', 'brightness', '0.2', '40.25'],
        ['base', 'clean', '', '73.50'],
        ['base', 'jpeg', '40', '65.00'],
        ['base', 'jpeg', '10', ''],
        ['base', 'brightness', '0.5', '60.00'],
    ]


def test_load_reports_reads_metric_json(tmp_path):
    report = dict(clean=71.0, levels={'jpeg': {'40': 60.0, '10': 30.0}})
    (tmp_path / 'a.json').write_text(json.dumps(report))
    results, clean = load_reports({'A': tmp_path / 'a.json'})
    assert results == {'A': {'jpeg': {'40': 60.0, '10': 30.0}}}
    assert clean == {'A': 71.0}
    (tmp_path / 'b.json').write_text('{}')
    with pytest.raises(ValueError, match='b.json'):
        load_reports({'B': tmp_path / 'b.json'})


@pytest.mark.faults
def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / 'f.txt'
    atomic_write(path, 'old')

    def fail(*args):
        raise OSError('disk full')

    monkeypatch.setattr('os.replace', fail)
    with pytest.raises(OSError, match='disk full'):
        atomic_write(path, 'new')
    assert path.read_text() == 'old'
    assert [p.name for p in tmp_path.iterdir()] == ['f.txt']
