# The 15 benchmark corruptions of Hendrycks & Dietterich (ImageNet-C), from
# the imagecorruptions package, at severities 1-5 (mild to harsh), grouped
# as noise, blur, weather and digital. Each type is 'ic_' + the library's
# name (mmseg_gearnn/distortions/corruptions.py); its levels are severities.
distortion_space = dict(
    distortions=dict(
        # noise
        ic_gaussian_noise=[1, 2, 3, 4, 5],
        ic_shot_noise=[1, 2, 3, 4, 5],
        ic_impulse_noise=[1, 2, 3, 4, 5],
        # blur
        ic_defocus_blur=[1, 2, 3, 4, 5],
        ic_glass_blur=[1, 2, 3, 4, 5],
        ic_motion_blur=[1, 2, 3, 4, 5],
        ic_zoom_blur=[1, 2, 3, 4, 5],
        # weather
        ic_snow=[1, 2, 3, 4, 5],
        ic_frost=[1, 2, 3, 4, 5],
        ic_fog=[1, 2, 3, 4, 5],
        ic_brightness=[1, 2, 3, 4, 5],
        # digital
        ic_contrast=[1, 2, 3, 4, 5],
        ic_elastic_transform=[1, 2, 3, 4, 5],
        ic_pixelate=[1, 2, 3, 4, 5],
        ic_jpeg_compression=[1, 2, 3, 4, 5],
    ),
    snap='error',
)
