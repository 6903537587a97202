# CamVid benchmark space: the paper's three distortions plus Gaussian noise,
# five levels each, mild to harsh: the harshest level of each type costs the
# clean model at least half of its clean mIoU (benchmarks/results/camvid.md).
distortion_space = dict(
    distortions=dict(
        brightness=[0.4, 0.2, 0.1, 0.05, 0.025],
        jpeg=[20, 10, 5, 3, 1],
        resolution=[0.5, 0.25, 0.18, 0.125, 0.09],
        gaussian_noise=[10, 20, 30, 40, 50],
    ),
    snap='error',
)
