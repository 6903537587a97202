"""Where results come from: every results writer records the commit and
refuses to write into benchmarks/results/ from a tree with uncommitted
changes unless given --allow-dirty (recorded); the CamVid report says that
its per-level table is seed 0."""

import json
import subprocess
from pathlib import Path

import pytest

from gearnn_bench.provenance import DirtyTreeError, record
from gearnn_bench.report import results_markdown

REPO_ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO_ROOT / 'benchmarks'


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ['git', '-C', str(repo), *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    """A committed checkout with a benchmarks/results/ folder."""
    root = tmp_path / 'repo'
    (root / 'benchmarks' / 'results').mkdir(parents=True)
    (root / 'code.py').write_text('x = 1\n')
    git(root, 'init', '-q')
    git(root, 'add', 'code.py')
    git(
        root,
        '-c',
        'user.name=t',
        '-c',
        'user.email=t@t',
        'commit',
        '-q',
        '-m',
        'code',
    )
    return root


def results_path(repo: Path) -> str:
    return str(repo / 'benchmarks' / 'results' / 'run.json')


def test_a_clean_tree_records_its_commit(repo):
    assert record(results_path(repo), repo_dir=str(repo)) == dict(
        commit=git(repo, 'rev-parse', 'HEAD'), dirty=False, allow_dirty=False
    )


@pytest.mark.faults
@pytest.mark.parametrize('change', ['edit', 'untracked'])
def test_a_dirty_tree_is_refused_for_committed_results(repo, change):
    if change == 'edit':
        (repo / 'code.py').write_text('x = 2\n')
        named = 'code.py'
    else:
        (repo / 'new_module.py').write_text('y = 1\n')
        named = 'new_module.py'
    with pytest.raises(DirtyTreeError) as error:
        record(results_path(repo), repo_dir=str(repo))
    message = str(error.value)
    assert named in message and '--allow-dirty' in message
    assert 'benchmarks/results/run.json' in message


@pytest.mark.faults
def test_allow_dirty_is_recorded(repo):
    (repo / 'code.py').write_text('x = 2\n')
    assert record(results_path(repo), True, repo_dir=str(repo)) == dict(
        commit=git(repo, 'rev-parse', 'HEAD'), dirty=True, allow_dirty=True
    )


def test_results_written_elsewhere_record_a_dirty_tree(repo, tmp_path):
    """Smoke runs and tests write outside benchmarks/results/: never
    refused, the changes still recorded."""
    (repo / 'code.py').write_text('x = 2\n')
    source = record(str(tmp_path / 'quick.json'), repo_dir=str(repo))
    assert source['dirty'] is True and source['allow_dirty'] is False


def writers():
    """The benchmark scripts that write into benchmarks/results/."""
    return sorted(
        p
        for p in BENCHMARKS.glob('*.py')
        if 'RESULTS_DIR' in p.read_text()
        or 'benchmarks/results/' in p.read_text()
    )


def test_the_writers_are_found():
    names = {p.name for p in writers()}
    assert {'camvid.py', 'camvid_c.py', 'tta_cost.py'} <= names
    assert len(names) >= 10


@pytest.mark.parametrize('script', writers(), ids=lambda p: p.name)
def test_every_writer_checks_the_tree_and_takes_allow_dirty(script):
    """Each writer adds the flag and records (checking the tree) before it
    does any work: the record call comes before the results are built."""
    text = script.read_text()
    assert 'add_allow_dirty(parser)' in text
    assert 'record(' in text and 'args.allow_dirty' in text
    assert 'git_commit(' not in text  # one way to name the commit


def seeded_results(seeds):
    entry = dict(
        mean_miou=44.51,
        clean_miou=55.93,
        adaptor_fraction=0.002,
        memory_ratio=1.04,
        levels={'jpeg': {'10': 40.0}},
        seeds=seeds,
        mean_miou_std=0.07,
    )
    return dict(
        command='python benchmarks/camvid.py',
        commit='abc',
        machine='m',
        wall_time_s=60.0,
        profile='full',
        data_root='d',
        split='val',
        base_checkpoint='b',
        methods={'gearnn': entry},
        budget_curve={},
        goals=[],
    )


def test_the_per_level_table_says_it_is_seed_0():
    text = results_markdown(seeded_results([44.6, 44.5, 44.43]))
    assert '## mIoU per distortion level (seed 0)' in text
    assert 'For the methods run with several seeds (gearnn)' in text
    one_seed = results_markdown(seeded_results([44.51]))
    assert '## mIoU per distortion level\n' in one_seed
    assert 'seed 0' not in one_seed


def test_the_committed_camvid_report_is_the_writers_text():
    """camvid.md is what the report writer makes of camvid.json: its
    per-level table says it is seed 0 beside the 3-seed means."""
    results = BENCHMARKS / 'results'
    data = json.loads((results / 'camvid.json').read_text())
    text = (results / 'camvid.md').read_text()
    assert text == results_markdown(data, 'camvid.png')
    assert '## mIoU per distortion level (seed 0)' in text


def test_the_report_shows_allow_dirty():
    results = dict(seeded_results([44.51]), dirty=True, allow_dirty=True)
    text = results_markdown(results)
    assert '- uncommitted changes: True, written with --allow-dirty' in text
