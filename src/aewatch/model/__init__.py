"""The model shell: the torch networks and the scorer that runs them, fitting and training,
calibration, model bundles and the files they are read from and written to, offline scoring
and the detectability table; beside them, for now, the pure time grid, windows and scaler.
The decision stages (threshold, detector, alert state) live in ``aewatch.core``, which never
imports this package. Nothing is re-exported here, so importing one module (``grid``,
``window``) does not load torch.
"""
