"""MkDocs hook: the benchmark results files become part of the site.

The docs link a figure's results file as ``../benchmarks/results/X``, a
path that resolves on disk beside ``docs/``. MkDocs only knows files under
``docs/``, so this hook adds every file under ``benchmarks/results/`` to the
site as ``results/X`` (its markdown files as pages outside the
navigation) and rewrites those links to it. A link to a results
file that does not exist then stays unresolved, which ``--strict`` turns
into a failed build.
"""

import os
import os.path as osp
import re

from mkdocs.structure.files import File

PREFIX = '../benchmarks/results/'
LINK = re.compile(r'\]\(' + re.escape(PREFIX))


def _results_dir(config) -> str:
    return osp.join(osp.dirname(config['config_file_path']), 'benchmarks')


def on_files(files, config):
    src_dir = _results_dir(config)
    results = osp.join(src_dir, 'results')
    for root, _, names in os.walk(results):
        for name in sorted(names):
            rel = osp.relpath(osp.join(root, name), src_dir)
            files.append(File(rel, src_dir, config['site_dir'], False))
    return files


def on_page_markdown(markdown, page, config, files):
    depth = page.file.src_uri.count('/')
    return LINK.sub('](' + '../' * depth + 'results/', markdown)
