"""The documentation site builds with ``mkdocs build --strict``: a broken
link between pages, a link to a missing results file, a missing anchor or
a page left out of the navigation fails the test run."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r'\]\(([^)\s]+)\)')


def mkdocs_build(config: Path, site_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            '-m',
            'mkdocs',
            'build',
            '--strict',
            '--config-file',
            str(config),
            '--site-dir',
            str(site_dir),
        ],
        capture_output=True,
        text=True,
        env={'NO_MKDOCS_2_WARNING': '1', 'PATH': '/usr/bin:/bin'},
        timeout=300,
    )


def test_docs_build_strict(tmp_path):
    proc = mkdocs_build(REPO_ROOT / 'mkdocs.yml', tmp_path / 'site')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / 'site' / 'method' / 'index.html').is_file()
    assert (tmp_path / 'site' / 'results' / 'camvid.json').is_file()


@pytest.mark.parametrize(
    'broken',
    [
        '[a page](no_such_page.md)',
        '[a results file](../benchmarks/results/no_such_file.json)',
        '[an anchor](usage.md#no-such-section)',
    ],
)
def test_docs_build_fails_on_a_broken_link(tmp_path, broken):
    """The same docs with one broken link planted in a copy."""
    copy = tmp_path / 'repo'
    docs = copy / 'docs'
    shutil.copytree(REPO_ROOT / 'docs', docs)
    (copy / 'benchmarks').mkdir()
    (copy / 'benchmarks' / 'results').symlink_to(
        REPO_ROOT / 'benchmarks' / 'results'
    )
    (copy / 'mkdocs.yml').write_text((REPO_ROOT / 'mkdocs.yml').read_text())
    method = docs / 'method.md'
    method.write_text(method.read_text() + f'\nSee {broken}.\n')
    proc = mkdocs_build(copy / 'mkdocs.yml', tmp_path / 'site')
    assert proc.returncode != 0
    target = LINK.search(broken).group(1).split('/')[-1].split('#')[-1]
    assert target in proc.stdout + proc.stderr


def test_readme_links_resolve():
    """README is not part of the site: its relative links are checked on
    disk (each page and results file it names exists)."""
    text = (REPO_ROOT / 'README.md').read_text()
    text = re.sub(r'```.*?```', '', text, flags=re.S)
    missing = [
        target
        for target in LINK.findall(text)
        if '://' not in target
        and not (REPO_ROOT / target.split('#')[0]).exists()
    ]
    assert not missing, missing
