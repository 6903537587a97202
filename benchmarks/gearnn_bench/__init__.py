"""What the benchmark scripts share: profiles, cached stages, the methods
and goals of the robustness comparison as data, and the report.

The scripts beside this package (``benchmarks/*.py``) import it by name,
as detectron2's projects import theirs: running ``python
benchmarks/camvid.py`` puts ``benchmarks/`` first on ``sys.path``. It is
experiment code, not part of the installed ``mmseg_gearnn``; scripts
import from the module that holds each name, so a light one (provenance)
costs no more than itself.

=================  ===================================================
``profiles``       how much a run does: ``full``, ``extended``, ``quick``
``stage_config``   the config a stage runs (data, resolution, schedule)
``cache``          finished stages kept with their inputs
``stages``         the stages: base, fine-tuning, gears, selection
``methods``        the compared methods, one entry each, and their configs
``comparison``     runs the methods into one results dict
``goals``          the targets the results are measured against
``report``         the results files and their schema
``provenance``     the commit and machine a result came from
=================  ===================================================
"""
