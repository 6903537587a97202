"""Reading figures and the results files they cite out of markdown (not a
test module): the convention is in docs/architecture.md, "Figures and
their results files"."""

import re
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple, Tuple

RESULTS = 'benchmarks/results/'
FENCE = re.compile(r'^```.*?^```', flags=re.S | re.M)
CODE_SPAN = re.compile(r'`[^`]*`')
LINK = re.compile(r'\[((?:[^\[\]]|\[[^\]]*\])*)\]\(([^)\s]+)\)')
# A decimal figure: digits, a point, digits; not part of a version number
# (2.13.0), a name (camvid_360x480) or a longer number.
DECIMAL = re.compile(r'(?<![\w.])\d+\.\d+(?![\w]|\.\d)')
NUMBER = re.compile(r'-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?')
# Where a quoted figure may come from, in the file's own unit: as written,
# a fraction quoted as a percentage, seconds quoted as minutes or ms.
SCALES = (1.0, 100.0, 1 / 60.0, 1000.0)


class Block(NamedTuple):
    path: Path
    line: int
    text: str


def blocks(path: Path) -> Iterator[Block]:
    """Paragraphs, list items and tables of a markdown file, code blocks
    left out. A table without a results link of its own takes the results
    links of the paragraph right before it (its caption)."""
    text = FENCE.sub(lambda m: '\n' * m.group(0).count('\n'), path.read_text())
    out: List[Block] = []
    current: List[str] = []
    start, kind = 0, None
    caption_of_next = None  # the last paragraph, for a following table

    def close():
        nonlocal caption_of_next
        block = Block(path, start, '\n'.join(current))
        if kind == 'table' and caption_of_next and not results_links(block):
            block = block._replace(text=block.text + caption(caption_of_next))
        out.append(block)
        caption_of_next = block if kind != 'table' else None
        current.clear()

    for number, line in enumerate(text.split('\n'), 1):
        stripped = line.strip()
        if stripped.startswith('|'):
            line_kind = 'table'
        elif re.match(r'^\s*(?:[-*]|\d+\.)\s', line):
            line_kind = 'item'
        elif stripped.startswith('#'):
            line_kind = 'heading'
        else:
            line_kind = 'text' if stripped else 'blank'
        starts_block = line_kind in ('blank', 'heading', 'item') or (
            (line_kind == 'table') != (kind == 'table')
        )
        if starts_block and current:
            close()
        if line_kind in ('blank', 'heading'):
            if line_kind == 'heading':
                caption_of_next = None
            kind = None
            continue
        if not current:
            start, kind = number, line_kind
        current.append(line)
    if current:
        close()
    yield from out


def caption(block: Block) -> str:
    """The results links of ``block``, as markdown to append to a table."""
    return ''.join(
        f'\n[{text}]({target})'
        for text, target in LINK.findall(block.text)
        if _is_results(block, target)
    )


def _is_results(block: Block, target: str) -> bool:
    if '://' in target:
        return False
    try:
        return _resolve(block, target).startswith(RESULTS)
    except ValueError:  # outside the repository
        return False


def _resolve(block: Block, target: str) -> str:
    """A link target as a path from the repository root."""
    target = target.split('#')[0]
    base = block.path.parent
    root = base if block.path.name == 'README.md' else base.parent
    return (base / target).resolve().relative_to(root.resolve()).as_posix()


def results_links(block: Block) -> List[Tuple[str, str]]:
    """``(link text, results file from the repository root)`` of each link
    in the block to a file under benchmarks/results/."""
    links = []
    for text, target in LINK.findall(block.text):
        if '://' in target:
            continue
        try:
            path = _resolve(block, target)
        except ValueError:
            continue
        if path.startswith(RESULTS):
            links.append((text, path))
    return links


def figures(text: str) -> List[str]:
    """The decimal figures written in ``text``, outside code spans."""
    return DECIMAL.findall(CODE_SPAN.sub(' ', text))


def prose(block: Block) -> str:
    """The block's text without its results links (their text is checked
    against their own file); other links keep their text."""
    return LINK.sub(
        lambda m: ' ' if _is_results(block, m.group(2)) else m.group(1),
        block.text,
    )


_numbers: Dict[Path, List[float]] = {}


def numbers_in(path: Path) -> List[float]:
    if path not in _numbers:
        _numbers[path] = [float(n) for n in NUMBER.findall(path.read_text())]
    return _numbers[path]


def found(figure: str, paths: List[Path]) -> bool:
    """Whether some number of the files, in one of the SCALES, rounds to
    ``figure`` at the figure's decimals."""
    decimals = len(figure.split('.')[1])
    value = float(figure)
    tolerance = 0.5 * 10**-decimals + 1e-9
    for path in paths:
        for number in numbers_in(path):
            for scale in SCALES:
                if abs(abs(number) * scale - value) <= tolerance:
                    return True
    return False
