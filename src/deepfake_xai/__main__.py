"""``python -m deepfake_xai <command>``: what the Snakemake rules and DVC stages run. The process ends
as soon as the command has written its outputs (no interpreter teardown: see
:func:`~deepfake_xai.stages.plumbing.exit_without_teardown`)."""

from .cli import main
from .stages.plumbing import exit_without_teardown

main()
exit_without_teardown()
