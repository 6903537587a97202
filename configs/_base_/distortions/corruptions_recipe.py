# The spaces of the CamVid-C recipe (benchmarks/camvid_c.py: gearnn_recipe).
# Trained on: the 15 benchmark corruptions of imagecorruptions but glass blur
# (8 s a 240x320 crop on one core, too slow to make on the fly), at
# severities 1-5; gears: one per corruption (its severities share it, snap
# 'nearest'), plus a clean gear: brightness 1.0, an identity level that
# leaves a frame unchanged, trained on clean frames (over a robust base it
# wins back clean accuracy). Evaluated on: all 15 and the 4 held-out
# corruptions. Types as in ./corruptions_benchmark.py.
corruption_severities = [1, 2, 3, 4, 5]
trained_corruptions = [
    'ic_gaussian_noise',
    'ic_shot_noise',
    'ic_impulse_noise',
    'ic_defocus_blur',
    'ic_motion_blur',
    'ic_zoom_blur',
    'ic_snow',
    'ic_frost',
    'ic_fog',
    'ic_brightness',
    'ic_contrast',
    'ic_elastic_transform',
    'ic_pixelate',
    'ic_jpeg_compression',
]
# The robust base's training space (mixed augmentation): no clean gear.
corruption_train_space = dict(
    distortions={name: corruption_severities for name in trained_corruptions},
    snap='error',
)
# The recipe's gears' training space: the same and the clean gear's level.
recipe_train_space = dict(
    distortions=dict(
        {name: corruption_severities for name in trained_corruptions},
        brightness=[1.0],
    ),
    snap='error',
)
# The gear table: gear 0 is the robust base itself, gears 1-14 the
# corruptions (listed at severity 3), gear 15 the clean gear.
recipe_gear_space = dict(
    distortions=dict(
        {name: [3] for name in trained_corruptions}, brightness=[1.0]
    ),
    snap='nearest',
)
recipe_clean_gear = 15
# What a trained recipe is tested on: every benchmark (glass blur included,
# in the benchmark's order) and held-out level.
recipe_eval_space = dict(
    distortions={
        name: corruption_severities
        for name in trained_corruptions[:4]
        + ['ic_glass_blur']
        + trained_corruptions[4:]
        + ['ic_speckle_noise', 'ic_gaussian_blur', 'ic_spatter', 'ic_saturate']
    },
    snap='error',
)
