# CamVid space at ten levels per type, for full-resolution runs on a GPU
# (benchmarks/camvid.py --full-resolution): the paper's three distortions
# plus Gaussian noise. It holds every level of ./camvid.py, whose harshest
# level of each type costs the clean model at least half of its clean mIoU,
# with five more levels in between and on the mild side.
distortion_space = dict(
    distortions=dict(
        brightness=[0.6, 0.4, 0.3, 0.2, 0.15, 0.1, 0.07, 0.05, 0.035, 0.025],
        jpeg=[40, 20, 15, 10, 7, 5, 4, 3, 2, 1],
        resolution=[0.75, 0.5, 0.35, 0.25, 0.21, 0.18, 0.15, 0.125, 0.1, 0.09],
        gaussian_noise=[5, 10, 15, 20, 25, 30, 35, 40, 45, 50],
    ),
    snap='error',
)
