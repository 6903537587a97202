"""Every figure quoted in README.md and docs/ appears in the results file
its text links (the convention: docs/architecture.md, "Figures and their
results files")."""

from pathlib import Path
from typing import List

import pytest
from figures import (
    Block,
    blocks,
    figures,
    found,
    prose,
    results_links,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
# Decimal numbers written in prose that are not measurements.
NOT_FIGURES = {
    '0.2': 'the adaptor budget, 0.2% of the model per gear',
    '4.8': "the paper's margin over stability training, a goal",
    '3.9': 'the oldest Python supported',
    '2.0': 'the Apache License version',
}


def documents() -> List[Path]:
    return [
        REPO_ROOT / 'README.md',
        *sorted((REPO_ROOT / 'docs').glob('*.md')),
    ]


def untraced(block: Block, root: Path = REPO_ROOT) -> List[str]:
    """The figures of ``block`` that the results files it links do not
    hold, each as 'figure (where it should be)'."""
    links = results_links(block)
    problems = []
    for text, path in links:
        if not (root / path).is_file():
            problems.append(f'{path} (linked, missing)')
            continue
        problems += [
            f'{figure} (not in {path})'
            for figure in figures(text)
            if not found(figure, [root / path])
        ]
    paths = sorted(
        {root / path for _, path in links if (root / path).is_file()}
    )
    for figure in figures(prose(block)):
        if figure in NOT_FIGURES:
            continue
        if not links:
            problems.append(f'{figure} (no results file linked)')
        elif not found(figure, paths):
            names = ', '.join(p.name for p in paths)
            problems.append(f'{figure} (not in {names})')
    return problems


@pytest.mark.parametrize('doc', documents(), ids=lambda p: p.name)
def test_every_figure_is_in_the_results_file_it_links(doc):
    problems = [
        f'{doc.name}:{block.line}: {problem}'
        for block in blocks(doc)
        for problem in untraced(block)
    ]
    assert not problems, '\n'.join(problems)


def test_a_figure_missing_from_its_results_file_is_caught(tmp_path):
    """A figure changed in a copy of a linked block fails; the same block
    with the figure from the file passes."""
    results = tmp_path / 'benchmarks' / 'results'
    results.mkdir(parents=True)
    (results / 'run.json').write_text('{"mean_miou": 44.5123, "time_s": 4548}')
    docs = tmp_path / 'docs'
    docs.mkdir()
    page = docs / 'page.md'
    link = '[`run.json`](../benchmarks/results/run.json)'
    page.write_text(f'GearNN reaches 44.51 in 75.8 min ({link}).\n')
    assert untraced(next(blocks(page)), tmp_path) == []
    page.write_text(f'GearNN reaches 44.61 in 75.8 min ({link}).\n')
    assert untraced(next(blocks(page)), tmp_path) == [
        '44.61 (not in run.json)'
    ]


def test_a_figure_without_a_results_link_is_caught(tmp_path):
    page = tmp_path / 'README.md'
    page.write_text(
        'The lock costs 0.5 us; lr `0.06`; 0.2% per gear.\n\n'
        '| method | mIoU |\n|---|---:|\n| GearNN | [44.51](x/run.json) |\n'
    )
    first, table = list(blocks(page))
    assert untraced(first, tmp_path) == ['0.5 (no results file linked)']
    # A link outside benchmarks/results/ is no source.
    assert untraced(table, tmp_path) == ['44.51 (no results file linked)']


def test_a_table_takes_the_links_of_its_caption(tmp_path):
    results = tmp_path / 'benchmarks' / 'results'
    results.mkdir(parents=True)
    (results / 'run.md').write_text('| gearnn | 44.51 |\n')
    page = tmp_path / 'README.md'
    page.write_text(
        'mIoU ([run](benchmarks/results/run.md)):\n\n'
        '| method | mIoU |\n|---|---:|\n| GearNN | 44.51 |\n| TENT | 41.86 |\n'
    )
    problems = [p for b in blocks(page) for p in untraced(b, tmp_path)]
    assert problems == ['41.86 (not in run.md)']
