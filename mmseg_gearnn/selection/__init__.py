"""Adaptor selection: score each tensor's distortion sensitivity, then pick
the best set under a memory budget by an exact 0/1 knapsack.

Layout: :mod:`.candidates` (the tensors), :mod:`.data` (distorted batches),
:mod:`.scores` (the scorer registry, normalisation) and :mod:`.scorers`
(the methods), :mod:`.budget`, :mod:`.knapsack` (the pure DP) and
:mod:`.solver` (tensors as knapsack items), :mod:`.record` (writing the
selection file; a model reads it with
:func:`~mmseg_gearnn.models.selection_file.load_selection`), :mod:`.select`
(the flow) and :mod:`.config` (from an mmseg config).
Importing :mod:`.scorers` registers the scoring methods.
"""

from ..models.selection_file import FORMAT_VERSION, load_selection
from .base_weights import (
    check_state_dict,
    extract_state_dict,
    file_fingerprint,
    load_base_checkpoint,
    read_checkpoint,
)
from .budget import check_budget_request, check_fits, resolve_budget
from .candidates import (
    BN_BUFFER,
    PARAM,
    TensorInfo,
    candidate_tensors,
    list_candidates,
    model_total_bytes,
    training_only_modules,
)
from .config import (
    base_model_cfg,
    build_base_model,
    run_selection_from_config,
    space_from_config,
)
from .data import (
    BatchSource,
    DataloaderBatchSource,
    parse_levels,
    replace_distortion,
    with_distortion,
)
from .knapsack import KnapsackResult, default_granularity, greedy, knapsack
from .record import build_record, format_selection_table, save_selection
from .scorers import gradient_statistics, segmentor_loss
from .scores import (
    DEFAULT_NORMALIZE,
    NORMALIZATIONS,
    SCORERS,
    Scorer,
    ScoreResult,
    available_methods,
    compute_scores,
    get_scorer,
    normalize_scores,
    register_scorer,
)
from .select import reselect, run_selection
from .solver import (
    DEFAULT_KNAPSACK_VALUE,
    KNAPSACK_VALUES,
    SelectionOutcome,
    select_tensors,
)

__all__ = [
    'check_state_dict',
    'extract_state_dict',
    'file_fingerprint',
    'load_base_checkpoint',
    'read_checkpoint',
    'BN_BUFFER',
    'PARAM',
    'TensorInfo',
    'candidate_tensors',
    'list_candidates',
    'model_total_bytes',
    'training_only_modules',
    'BatchSource',
    'DataloaderBatchSource',
    'parse_levels',
    'replace_distortion',
    'with_distortion',
    'KnapsackResult',
    'default_granularity',
    'greedy',
    'knapsack',
    'DEFAULT_NORMALIZE',
    'NORMALIZATIONS',
    'SCORERS',
    'Scorer',
    'ScoreResult',
    'available_methods',
    'compute_scores',
    'get_scorer',
    'gradient_statistics',
    'normalize_scores',
    'register_scorer',
    'segmentor_loss',
    'check_fits',
    'resolve_budget',
    'check_budget_request',
    'DEFAULT_KNAPSACK_VALUE',
    'KNAPSACK_VALUES',
    'SelectionOutcome',
    'select_tensors',
    'FORMAT_VERSION',
    'build_record',
    'format_selection_table',
    'load_selection',
    'save_selection',
    'reselect',
    'run_selection',
    'base_model_cfg',
    'build_base_model',
    'run_selection_from_config',
    'space_from_config',
]
