import sys

from ml_project.sweeps.cli import main

sys.exit(main())
