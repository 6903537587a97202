# Distortion space of the embedded demo: the paper's three distortions plus
# noise, three levels each, mild to harsh. Gear 0 is clean; gears 1..12 follow
# the order below.
distortion_space = dict(
    distortions=dict(
        brightness=[0.4, 0.2, 0.1],
        jpeg=[30, 15, 5],
        resolution=[0.5, 0.25, 0.125],
        gaussian_noise=[15, 30, 60],
    ),
    snap='error',
)
