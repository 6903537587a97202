from mmseg_gearnn.tools.demo import main, parse_args  # noqa: F401

if __name__ == '__main__':
    main()
