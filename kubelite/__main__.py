import sys

from kubelite.cli.main import main

sys.exit(main())
