"""``python -m align3d_rt`` = the ``align3d-rt`` command (also ``torchrun -m align3d_rt train ...``)."""
import sys

from align3d_rt.cli import main

sys.exit(main())
