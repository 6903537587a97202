# The spaces of the CamVid-C recipe (benchmarks/camvid_c.py: gearnn_recipe).
# Trained on: the 15 benchmark corruptions of imagecorruptions but glass blur
# (8 s a 240x320 crop on one core, too slow to make on the fly), at
# severities 1-5; gears: one per corruption (its severities share it, snap
# 'nearest'), plus a clean gear: brightness 1.0, an identity level that
# leaves a frame unchanged, trained on clean frames (over a robust base it
# wins back clean accuracy). Evaluated on: all 15 and the 4 held-out
# corruptions. Types as in ./corruptions_benchmark.py.
# The robust base's training space (mixed augmentation): no clean gear.
corruption_train_space = dict(
    distortions=dict(
        ic_gaussian_noise=[1, 2, 3, 4, 5],
        ic_shot_noise=[1, 2, 3, 4, 5],
        ic_impulse_noise=[1, 2, 3, 4, 5],
        ic_defocus_blur=[1, 2, 3, 4, 5],
        ic_motion_blur=[1, 2, 3, 4, 5],
        ic_zoom_blur=[1, 2, 3, 4, 5],
        ic_snow=[1, 2, 3, 4, 5],
        ic_frost=[1, 2, 3, 4, 5],
        ic_fog=[1, 2, 3, 4, 5],
        ic_brightness=[1, 2, 3, 4, 5],
        ic_contrast=[1, 2, 3, 4, 5],
        ic_elastic_transform=[1, 2, 3, 4, 5],
        ic_pixelate=[1, 2, 3, 4, 5],
        ic_jpeg_compression=[1, 2, 3, 4, 5],
    ),
    snap='error',
)
# The recipe's gears' training space: the same and the clean gear's level.
recipe_train_space = dict(
    distortions=dict(
        ic_gaussian_noise=[1, 2, 3, 4, 5],
        ic_shot_noise=[1, 2, 3, 4, 5],
        ic_impulse_noise=[1, 2, 3, 4, 5],
        ic_defocus_blur=[1, 2, 3, 4, 5],
        ic_motion_blur=[1, 2, 3, 4, 5],
        ic_zoom_blur=[1, 2, 3, 4, 5],
        ic_snow=[1, 2, 3, 4, 5],
        ic_frost=[1, 2, 3, 4, 5],
        ic_fog=[1, 2, 3, 4, 5],
        ic_brightness=[1, 2, 3, 4, 5],
        ic_contrast=[1, 2, 3, 4, 5],
        ic_elastic_transform=[1, 2, 3, 4, 5],
        ic_pixelate=[1, 2, 3, 4, 5],
        ic_jpeg_compression=[1, 2, 3, 4, 5],
        brightness=[1.0],
    ),
    snap='error',
)
# The gear table: gear 0 is the robust base itself, gears 1-14 the
# corruptions (listed at severity 3), gear 15 the clean gear.
recipe_gear_space = dict(
    distortions=dict(
        ic_gaussian_noise=[3],
        ic_shot_noise=[3],
        ic_impulse_noise=[3],
        ic_defocus_blur=[3],
        ic_motion_blur=[3],
        ic_zoom_blur=[3],
        ic_snow=[3],
        ic_frost=[3],
        ic_fog=[3],
        ic_brightness=[3],
        ic_contrast=[3],
        ic_elastic_transform=[3],
        ic_pixelate=[3],
        ic_jpeg_compression=[3],
        brightness=[1.0],
    ),
    snap='nearest',
)
recipe_clean_gear = 15
# What a trained recipe is tested on: every benchmark and held-out level.
recipe_eval_space = dict(
    distortions=dict(
        ic_gaussian_noise=[1, 2, 3, 4, 5],
        ic_shot_noise=[1, 2, 3, 4, 5],
        ic_impulse_noise=[1, 2, 3, 4, 5],
        ic_defocus_blur=[1, 2, 3, 4, 5],
        ic_glass_blur=[1, 2, 3, 4, 5],
        ic_motion_blur=[1, 2, 3, 4, 5],
        ic_zoom_blur=[1, 2, 3, 4, 5],
        ic_snow=[1, 2, 3, 4, 5],
        ic_frost=[1, 2, 3, 4, 5],
        ic_fog=[1, 2, 3, 4, 5],
        ic_brightness=[1, 2, 3, 4, 5],
        ic_contrast=[1, 2, 3, 4, 5],
        ic_elastic_transform=[1, 2, 3, 4, 5],
        ic_pixelate=[1, 2, 3, 4, 5],
        ic_jpeg_compression=[1, 2, 3, 4, 5],
        ic_speckle_noise=[1, 2, 3, 4, 5],
        ic_gaussian_blur=[1, 2, 3, 4, 5],
        ic_spatter=[1, 2, 3, 4, 5],
        ic_saturate=[1, 2, 3, 4, 5],
    ),
    snap='error',
)
