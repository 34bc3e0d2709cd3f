import sys

from nanorecon.cli import main

sys.exit(main())
