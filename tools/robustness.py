from mmseg_gearnn.tools.robustness import main, parse_args  # noqa: F401

if __name__ == '__main__':
    main()
