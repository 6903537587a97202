# The paper's three distortions at ten levels each, mild to harsh.
distortion_space = dict(
    distortions=dict(
        brightness=[0.8, 0.6, 0.5, 0.4, 0.3, 0.25, 0.2, 0.15, 0.1, 0.05],
        jpeg=[90, 70, 50, 40, 30, 20, 15, 10, 7, 5],
        resolution=[0.9, 0.75, 0.6, 0.5, 0.4, 0.3, 0.25, 0.2, 0.15, 0.125],
    ),
    snap='error',
)
