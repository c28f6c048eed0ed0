import sys

from relay_agent.cli import main

sys.exit(main())
