"""segcore: the small shared library behind the pipeline's rule scripts.

Each module holds pure, typed functions; rule scripts in ``scripts/`` read ``snakemake.*``, call these and
write outputs. Array conventions used throughout:

- image: ``uint8``/``uint16`` (``float32`` for float sources) on disk, ``(H, W, C)`` with C in {1, 3};
  ``float32`` ``(C, H, W)``, normalised as the experiment's plan says (:mod:`segcore.plan.normalise`), when
  fed to a model.
- class mask: ``uint8`` ``(H, W)``, 0 = background, 1..K-1 the foreground classes.
- instance mask: ``uint16``/``int32`` ``(H, W)``, 0 = no object, each object a distinct positive id.
- weight map: ``float32`` ``(H, W)``.
"""
