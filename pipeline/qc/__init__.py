"""QC of the delivered stems, one module per job.

- :mod:`~dubprep.qc.result`: limits, inputs, measurements and checks as types;
- :mod:`~dubprep.qc.loudness`: loudness and true peak (ffmpeg ``ebur128``);
- :mod:`~dubprep.qc.peaks`: sample peaks, clipping and the waveform envelope;
- :mod:`~dubprep.qc.nulls`: the null tests;
- :mod:`~dubprep.qc.speech`: dialogue left in the M&E (Silero VAD);
- :mod:`~dubprep.qc.checks`: the checks and ``qc.json``;
- :mod:`~dubprep.qc.report`: ``report.html``;
- :mod:`~dubprep.qc.run`: :func:`~dubprep.qc.run.run_qc`, all of it on one delivery.
"""
