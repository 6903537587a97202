# The 4 held-out corruptions of Hendrycks & Dietterich (ImageNet-C), from the
# imagecorruptions package, at severities 1-5 (mild to harsh): kept out of
# training and model selection, to measure corruptions no gear was trained
# on. Types are named as in ./corruptions_benchmark.py.
distortion_space = dict(
    distortions=dict(
        ic_speckle_noise=[1, 2, 3, 4, 5],
        ic_gaussian_blur=[1, 2, 3, 4, 5],
        ic_spatter=[1, 2, 3, 4, 5],
        ic_saturate=[1, 2, 3, 4, 5],
    ),
    snap='error',
)
