import sys

from vderain.cli import main

sys.exit(main())
