"""Scorers declare their properties in their registration, and the
selection flow reads them there; selection and the models import in
either order."""

import subprocess
import sys

import pytest

from mmseg_gearnn.selection import (
    SCORERS,
    compute_scores,
    get_scorer,
    list_candidates,
    parse_levels,
    register_scorer,
    run_selection,
)


@pytest.fixture
def registered():
    """Register test scorers; unregister them afterwards."""
    names = []

    def register(name, fn, **properties):
        register_scorer(name, **properties)(fn)
        names.append(name)

    yield register
    for name in names:
        SCORERS.pop(name)


def test_builtin_methods_declare_their_properties():
    def having(prop):
        return {m for m, s in SCORERS.items() if getattr(s, prop)}

    assert having('needs_data') == {'weight_change', 'fisher', 'rgn'}
    assert having('full_set') == {'bn', 'all'}
    assert {m for m, s in SCORERS.items() if not s.normalised} == {
        'bn',
        'all',
        'random',
    }
    assert get_scorer('weight_change').options == ('lr', 'momentum')
    assert all(s.description for s in SCORERS.values())
    with pytest.raises(ValueError, match="unknown scoring method 'nope'"):
        get_scorer('nope')
    with pytest.raises(KeyError, match='already registered'):
        register_scorer('fisher')(lambda model, **kwargs: {})


def test_a_new_full_set_scorer_is_one_registration(
    registered, tiny_model, space
):
    def ones(model, seed=0, factor=1.0):
        return {t.name: factor for t in list_candidates(model)}

    registered(
        'test_ones',
        ones,
        normalised=False,
        full_set=True,
        options=('factor',),
        description='factor for every tensor',
    )
    record = run_selection(
        tiny_model, space, 'test_ones', budget=1e-3, progress=False, factor=2
    )
    assert record['solver'] == 'full_set'
    assert record['num_selected'] == len(list_candidates(tiny_model))
    assert record['method_description'] == 'factor for every tensor'
    assert record['method_options'] == dict(factor=2)
    assert record['normalisation']['mode'] == 'none'
    assert {t['score'] for t in record['tensors']} == {2.0}


def test_a_data_scorer_gets_levels_and_steps(
    registered, tiny_model, space, source
):
    seen = {}

    def by_level(model, source, levels, steps, seed, progress):
        seen.update(levels=levels, steps=steps)
        names = [t.name for t in list_candidates(model)]
        return {n: float(i) for i, n in enumerate(names)}

    registered('test_by_level', by_level, needs_data=True)
    with pytest.raises(ValueError, match='needs a BatchSource'):
        compute_scores('test_by_level', tiny_model)
    levels = parse_levels(space, ['brightness'])
    result = compute_scores(
        'test_by_level', tiny_model, source, levels, steps=3, progress=False
    )
    assert seen == dict(levels=[tuple(lv) for lv in levels], steps=3)
    assert result.normalize == 'rank'
    assert result.options == dict(levels=[list(lv) for lv in levels], steps=3)


@pytest.mark.parametrize(
    'first, second', [('selection', 'models'), ('models', 'selection')]
)
def test_selection_and_models_import_in_either_order(first, second):
    # Selection reads the models' definitions and the segmentor reads
    # selection files through this package: neither may need the other
    # half-imported. The package's own __init__ is skipped so that the
    # order is the test's.
    code = (
        'import importlib, importlib.util, sys, types\n'
        "spec = importlib.util.find_spec('mmseg_gearnn')\n"
        "pkg = types.ModuleType('mmseg_gearnn')\n"
        'pkg.__path__ = list(spec.submodule_search_locations)\n'
        "sys.modules['mmseg_gearnn'] = pkg\n"
        f"importlib.import_module('mmseg_gearnn.{first}')\n"
        f"importlib.import_module('mmseg_gearnn.{second}')\n"
        'from mmseg_gearnn.selection import load_selection\n'
    )
    proc = subprocess.run(
        [sys.executable, '-c', code], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
