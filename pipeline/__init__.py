"""Build pipeline for the EECS 182 HW10 bundle.

``python -m pipeline release [--root DIR]``   master -> release/, solutions/, autograder zip
``python -m pipeline solutions [--root DIR]`` execute the solutions notebooks (slow)

See :mod:`pipeline.release` and :mod:`pipeline.execute`; ``pipeline.grade_local``
grades a submission locally with the autograder.
"""
