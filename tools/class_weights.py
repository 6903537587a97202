from mmseg_gearnn.tools.class_weights import main, parse_args  # noqa: F401

if __name__ == '__main__':
    main()
