"""One module per stage the DAG runs, each owning its options (declared once, in ``OPTIONS``) and its
logic (``run``). The command line (``deepfake-xai <stage>``), the Snakemake rules, ``params.yaml``
for DVC and the code digests all read a stage's options from its module: see :mod:`.spec` for the
declaration and :mod:`.wiring` for how a workflow config becomes a stage's command line."""
