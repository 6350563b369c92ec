import sys

from tms.cli import main

sys.exit(main())
