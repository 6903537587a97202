"""The command-line tools: each module's ``main`` is a console entry point
of the package (``gearnn-train``, ``gearnn-test``, ...), also run as
``python -m mmseg_gearnn.tools.<name>`` and as ``tools/<name>.py`` in a
checkout. The top layer: a tool parses its arguments, checks them before
any model is built and calls the library; nothing in the library imports
this package.

=========================  ==============================================
entry point                module
=========================  ==============================================
``gearnn-train``           :mod:`mmseg_gearnn.tools.train`
``gearnn-test``            :mod:`mmseg_gearnn.tools.test`
``gearnn-select``          :mod:`mmseg_gearnn.tools.select_params`
``gearnn-export``          :mod:`mmseg_gearnn.tools.export_gear`
``gearnn-infer``           :mod:`mmseg_gearnn.tools.infer`
``gearnn-robustness``      :mod:`mmseg_gearnn.tools.robustness`
``gearnn-train-estimator`` :mod:`mmseg_gearnn.tools.train_estimator`
``gearnn-class-weights``   :mod:`mmseg_gearnn.tools.class_weights`
``gearnn-demo``            :mod:`mmseg_gearnn.tools.demo`
=========================  ==============================================
"""
